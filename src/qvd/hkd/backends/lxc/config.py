"""The LXC container configuration of a VM, as text (pure: tested without LXC).

Every value is data, never syntax: a value holding a control character (newline, CR,
NUL, …) is refused with :class:`UnsafeConfigValue`, so nothing can add a key such as
``lxc.hook.pre-start``. The VM's name reaches the file only as a validated host name
(else the container name stands in); logins and storage paths never reach it at all:
the rootfs and home lines name mount points in the container's own directory.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from qvd.hkd.backends.base import TerminalBackendError, VmSpec
from qvd.hkd.backends.lxc.idmap import IdRange

__all__ = [
    "CAPS_DROPPED",
    "CFS_PERIOD_US",
    "VMA_INIT",
    "UnsafeConfigValue",
    "cgroup_limits",
    "render_config",
    "uts_name",
]

VMA_INIT = "/usr/lib/qvd/bin/qvd-vma"
SECCOMP_PROFILE = "/usr/share/lxc/config/common.seccomp"
# on top of common.conf's; sys_admin too: root in a desktop mounts nothing
CAPS_DROPPED = (
    "sys_admin", "sys_module", "sys_rawio", "sys_time", "mac_admin", "mac_override",
    "syslog", "wake_alarm",
)  # fmt: skip
CFS_PERIOD_US = 100_000  # cgroup v1 cpu.cfs_period_us: the quota is vcpus periods
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_WORD = re.compile(r"\S+")
_PATH = re.compile(r"[^\s:]+")  # and no ':' (the overlay path separator)


class UnsafeConfigValue(TerminalBackendError):
    """A value that would change the meaning of the container configuration."""


def _has_control(value: str) -> bool:
    return any(ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in value)


def _value(what: str, value: str) -> str:
    if _has_control(value):
        raise UnsafeConfigValue(f"{what} {value[:60]!r} contains a control character")
    return value


def _word(what: str, value: str) -> str:
    """A value written as one word (device names, addresses)."""
    if not _WORD.fullmatch(_value(what, value)):
        raise UnsafeConfigValue(f"{what} {value[:60]!r} is empty or holds a space")
    return value


def _ipv4(what: str, value: str) -> str:
    """An IPv4 address written as such (nothing else fits on its line)."""
    try:
        return str(ipaddress.IPv4Address(_value(what, value)))
    except ValueError:
        raise UnsafeConfigValue(f"{what} {value[:60]!r} is not an IPv4 address") from None


def _path(what: str, value: Path) -> str:
    """A path in a mount line: one word without ':'."""
    text = _value(what, str(value))
    if not _PATH.fullmatch(text):
        raise UnsafeConfigValue(f"{what} {text[:60]!r} is empty or holds a space or ':'")
    return text


def uts_name(vm_name: str, container: str) -> str:
    """The container's host name: the VM's name when it is a valid host name, else the
    container name. A name with a control character is refused outright."""
    _value("VM name", vm_name)
    return vm_name if _HOSTNAME.fullmatch(vm_name) else container


def cgroup_limits(spec: VmSpec, *, pids_max: int) -> dict[tuple[str, str], int]:
    """The cgroup v1 values of a VM, ``(controller, key) -> value``: the neutral figures
    mapped to LXC's knobs (memory MiB -> bytes; CPU weight, 100 = normal, -> cpu.shares,
    1024 = normal; vCPUs -> a CFS quota of that many periods). The renderer writes them
    and the backend reads them back after start."""
    if spec.memory_mib <= 0 or spec.vcpus <= 0 or not 1 <= spec.cpu_weight <= 10000:
        raise TerminalBackendError(
            f"VM {spec.vm_id}: memory {spec.memory_mib} MiB, {spec.vcpus} vCPUs and CPU "
            f"weight {spec.cpu_weight} must be positive (weight 1..10000)"
        )
    if pids_max <= 0:
        raise TerminalBackendError(f"vm.lxc.pids.max is {pids_max}: it must be positive")
    return {
        ("memory", "memory.limit_in_bytes"): int(spec.memory_mib) << 20,
        ("cpu", "cpu.shares"): max(2, int(spec.cpu_weight) * 1024 // 100),
        ("cpu", "cpu.cfs_period_us"): CFS_PERIOD_US,
        ("cpu", "cpu.cfs_quota_us"): int(spec.vcpus) * CFS_PERIOD_US,
        ("pids", "pids.max"): int(pids_max),
    }


def render_config(
    spec: VmSpec,
    *,
    name: str,
    ids: IdRange,
    lower: Path,
    upper: Path,
    home: Path | None,
    log_file: Path,
    pids_max: int,
    fuse: bool = False,
) -> str:
    """Debian LXC 5 keys, cgroup v1 limits (this host kind has no v2 controllers).

    ``lower``/``upper``/``home`` are the mount points in the container's directory (the
    view of the base, the bound layer's ``upper``, the bound home). ``fuse``
    (``vm.lxc.fuse``): the host's ``/dev/fuse`` is bound in (common.conf already allows
    c 10:229) and ``sys_admin`` stays in the desktop's bounding set, so the session's
    user mounts the client's shared folders with the setuid ``fusermount3``; root in
    the desktop can then mount the filesystems a user namespace may mount (tmpfs,
    fuse), inside its own namespaces only."""
    dropped = [cap for cap in CAPS_DROPPED if not (fuse and cap == "sys_admin")]
    net = spec.network
    limits = [
        f"lxc.cgroup.{key} = {value}"
        for (_, key), value in cgroup_limits(spec, pids_max=pids_max).items()
    ]
    lines = [
        "# generated by the QVD HKD; rewritten at every start",
        "lxc.include = /usr/share/lxc/config/common.conf",
        f"lxc.idmap = u 0 {ids.start} {ids.count}",
        f"lxc.idmap = g 0 {ids.start} {ids.count}",
        f"lxc.uts.name = {uts_name(spec.name, _word('container name', name))}",
        f"lxc.rootfs.path = overlay:{_path('base path', lower)}:{_path('upper path', upper)}",
        # mounted by the container's root: overlay keeps its whiteout/opaque marks in
        # user.overlay.* (trusted.* needs host root; without it removing a base
        # directory fails with EIO)
        "lxc.rootfs.options = userxattr",
        "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed",
        "lxc.autodev = 1",
        "lxc.tty.max = 0",
        "lxc.pty.max = 256",
        "lxc.console.path = none",
        "lxc.apparmor.profile = generated",
        "lxc.apparmor.allow_nesting = 0",
        f"lxc.seccomp.profile = {SECCOMP_PROFILE}",
        f"lxc.cap.drop = {' '.join(dropped)}",
        "lxc.mount.entry = tmpfs tmp tmpfs rw,nosuid,nodev,mode=1777,size=256m 0 0",
        "lxc.mount.entry = tmpfs run tmpfs rw,nosuid,nodev,mode=0755,size=32m 0 0",
        # an image whose init is systemd needs /run/lock mounted (it cannot: no sys_admin)
        "lxc.mount.entry = tmpfs run/lock tmpfs rw,nosuid,nodev,noexec,create=dir,mode=1777,"
        "size=4m 0 0",
        # nxagent's shared memory: LXC's autodev /dev has no /dev/shm
        "lxc.mount.entry = tmpfs dev/shm tmpfs rw,nosuid,nodev,noexec,create=dir,mode=1777,"
        "size=64m 0 0",
        "lxc.net.0.type = veth",
        f"lxc.net.0.link = {_word('bridge', net.bridge)}",
        "lxc.net.0.flags = up",
        "lxc.net.0.name = eth0",
        f"lxc.net.0.veth.pair = {_word('host device', net.host_device)}",
        f"lxc.net.0.hwaddr = {_word('MAC address', net.mac)}",
        f"lxc.net.0.ipv4.address = {_word('address', net.address)}/{int(net.prefix)}",
        *limits,
        f"lxc.init.cmd = {VMA_INIT}",
        # systemd's halt (SIGTERM would re-execute it); a VMA init takes it as SIGTERM
        "lxc.signal.halt = SIGRTMIN+3",
        f"lxc.log.file = {_path('log file', log_file)}",
        "lxc.log.level = WARN",
    ]
    if fuse:
        lines.append("lxc.mount.entry = /dev/fuse dev/fuse none bind,create=file,optional 0 0")
    if net.gateway is not None:
        lines.append(f"lxc.net.0.ipv4.gateway = {_ipv4('gateway', net.gateway)}")
    if home is not None:
        # the home keeps the node's own ids on disk (container uid n = host uid n), so
        # it works whatever range the VM runs in; homefs is 0700 root on the host
        lines.append(
            f"lxc.mount.entry = {_path('home path', home)} home none "
            "bind,create=dir,idmap=container 0 0"
        )
    return "\n".join(lines) + "\n"
