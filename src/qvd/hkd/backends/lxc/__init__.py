"""The LXC backend: one unprivileged container per VM, from Debian's ``lxc`` tools.

Every container runs in its own user namespace: root in the desktop is an unprivileged
host id range (``idmap``), with LXC's default seccomp policy, AppArmor profile
``generated`` where the kernel has AppArmor, no CAP_SYS_ADMIN and the devices cgroup
allow list of ``common.conf``. Root: an overlay of a read-only idmapped view of the
DI's unpacked base (unpacked once, shared by every VM of that DI whatever its range)
and the VM's own upper layer (owned by the VM's range; a file system of its own of
``vm.overlay.size`` MiB, see ``_bound_layer``), mounted by LXC inside the container;
the view and the binds live in a private mount namespace made for each start
(``mountns``). Init: the VMA. Network: a veth on the node's bridge with the VM's
fixed address and MAC. Limits: cgroup v1 memory, cpu.shares (the VM's CPU weight),
a CFS quota of its vCPUs and pids.max, read back after start. Homes: a loop-mounted
file system per VM (``<vm_id>-fs``) or, with ``vm.lxc.home.per.user``, per login.

Its own settings, read from the node configuration it is made with: ``vm.lxc.*``
(id map, pids.max, per-user homes) and ``vm.overlay.size`` (the bound of each upper).
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import secrets
import shutil
from pathlib import Path

from qvd.config import Config, ConfigValueError
from qvd.config.names import NameRuleError, login_path_key
from qvd.hkd.backends.base import (
    Backend,
    BackendError,
    Capabilities,
    TerminalBackendError,
    VmSpec,
)
from qvd.hkd.backends.homefs import ensure_home, home_image, release_home
from qvd.hkd.backends.hostfs import private_dir, write_private
from qvd.hkd.backends.hostnet import host_devices
from qvd.hkd.backends.lxc.config import cgroup_limits, render_config
from qvd.hkd.backends.lxc.control import Lxc, StartMounts, run
from qvd.hkd.backends.lxc.idmap import IdPlan, IdRange, ensure_subordinate_ids
from qvd.hkd.backends.lxc.layout import Layout, container_name, vm_id_of
from qvd.hkd.backends.lxc.safefs import UnsafePath, shift_owners, write_private_file
from qvd.imagefile import ImageRejected, Limits, unpack_checked

__all__ = ["LxcBackend"]

log = logging.getLogger("qvd.hkd.lxc")
_MIB = 1 << 20

_ALIVE = {"RUNNING", "STARTING", "STOPPING", "FREEZING", "FROZEN", "THAWED", "ABORTING"}
SECRET_PATH = Path("etc/qvd/vma.secret")
RESOLV_CONF_PATH = Path("etc/resolv.conf")
_OVERLAY_POLICY, _KEPT, _FRESH = "overlay", "kept\n", "fresh\n"  # in the container dir


class LxcBackend(Backend):
    name = "lxc"
    # the container's init is the VMA: SIGTERM is its shutdown; it answers in seconds
    capabilities = Capabilities(needs_vma_poweroff=False)

    def __init__(self, config: Config) -> None:
        self.layout = Layout(
            images=config.get_path("path.storage.images"),
            basefs=config.get_path("path.storage.basefs"),
            overlayfs=config.get_path("path.storage.overlayfs"),
            homefs=config.get_path("path.storage.homefs"),
            lxcpath=config.get_path("path.run.lxc"),
        )
        self.device_prefix = config.get("internal.vm.network.device.prefix")
        self.lxc = Lxc(self.layout.lxcpath, config.get_path("path.cgroup"))
        try:
            self.ids = IdPlan(
                config.get_int("vm.lxc.idmap.start"), config.get_int("vm.lxc.idmap.ranges")
            )
        except ValueError as exc:
            raise TerminalBackendError(str(exc)) from None
        self.home_per_user = config.get_bool("vm.lxc.home.per.user")
        self.pids_max = config.get_int("vm.lxc.pids.max")
        self.fuse = config.get_bool("vm.lxc.fuse")  # shared folders (sshfs) in desktops
        self.overlay_size_mib = config.get_int("vm.overlay.size")
        if self.overlay_size_mib < 0:
            raise ConfigValueError(
                f"vm.overlay.size is {self.overlay_size_mib}: a desktop's upper layer bound "
                "is 0 (unbounded) or a positive number of MiB"
            )
        if self.pids_max <= 0:
            raise ConfigValueError(f"vm.lxc.pids.max is {self.pids_max}: it must be positive")
        self.unpack_limits = Limits(
            max_bytes=config.get_int("di.unpack.max_bytes"),
            max_members=config.get_int("di.unpack.max_members"),
        )
        self._secure_storage()

    def _secure_storage(self) -> None:
        """Storage parents 0700 root (fixing existing nodes' modes); the LXC path
        traversable (the containers' mapped roots reach their own directory only);
        root's subordinate ids when newuidmap is installed."""
        layout = self.layout
        for parent in (layout.images, layout.basefs, layout.overlayfs, layout.homefs):
            private_dir(parent)
        layout.lxcpath.mkdir(parents=True, exist_ok=True)
        layout.lxcpath.chmod(0o711)
        ensure_subordinate_ids(self.ids)

    def facts(self) -> dict[str, str]:
        homes = "per-user" if self.home_per_user else "per-vm"
        return {"homes": homes, "overlay_mib": str(self.overlay_size_mib)}

    def _home_key(self, spec: VmSpec) -> str | None:
        """The name of the VM's home under homefs: its login with per-user homes (a
        login that is not one plain path component is refused), else ``<vm_id>-fs``."""
        if spec.home is None:
            return None
        if not self.home_per_user:
            return f"{spec.vm_id}-fs"
        try:
            return login_path_key(spec.home.login)
        except NameRuleError as exc:
            raise TerminalBackendError(f"refused: {exc}") from None

    def _check_lxcpath_reachable(self) -> None:
        """The containers' mapped roots must traverse every parent of the LXC path."""
        lxcpath = self.layout.lxcpath
        for ancestor in (lxcpath, *lxcpath.parents):
            if not ancestor.stat().st_mode & 0o001:
                raise TerminalBackendError(
                    f"{ancestor} (the LXC path {lxcpath} or a parent) is not traversable "
                    "by others: unprivileged containers cannot reach their directory; "
                    "chmod o+x it or move path.run.lxc"
                )

    # ---- storage ------------------------------------------------------------------------
    def ensure_base(self, di_id: int, image: Path) -> Path:
        """The DI's unpacked base, unpacked now if this node has not done it yet."""
        base = self.layout.base(di_id, image)
        if base.is_dir():
            return base
        if not image.is_file():
            raise TerminalBackendError(f"disk image file {image} is missing on this node")
        private_dir(self.layout.basefs)
        with open(self.layout.base_lock(di_id), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one unpack per DI, others wait and reuse
            if base.is_dir():
                return base
            tmp = self.layout.basefs / f"untar-{os.getpid()}-{secrets.token_hex(4)}"
            tmp.mkdir()
            try:
                unpack_checked(image, tmp, limits=self.unpack_limits)
            except ImageRejected as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise TerminalBackendError(f"disk image {image.name} refused: {exc}") from None
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            tmp.chmod(0o755)
            tmp.rename(base)
        return base

    def prepare(self, spec: VmSpec) -> None:
        home_key = self._home_key(spec)  # a login it cannot store: refused before anything
        ids = self.ids.for_vm(spec.vm_id)
        self.ensure_base(spec.di_id, spec.image)
        layer = self.layout.layer(spec.di_id, spec.vm_id)
        for old in self.layout.layers_of(spec.vm_id):
            if old != layer or not spec.overlay_persistent:
                self._discard(old)
        self._bound_layer(layer, self.overlay_size_mib)
        self._own_layer(layer, ids)
        try:  # a persistent upper is the desktop's root's: never follow its links
            write_private_file(
                self.layout.upper(spec.di_id, spec.vm_id), SECRET_PATH,
                (spec.vma_secret + "\n").encode(), (ids.start, ids.start),
            )  # fmt: skip
        except UnsafePath as exc:
            raise TerminalBackendError(
                f"VM {spec.vm_id}: cannot place the VMA secret: {exc}"
            ) from None
        if spec.network.dns:  # a desktop that may go out resolves through the node's DNS
            self._write_resolv_conf(spec, (ids.start, ids.start))
        if spec.home is not None and home_key is not None:
            home = self.layout.home(home_key)
            ensure_home(home, spec.home.size_mib)  # its own file system: the quota
            if home.is_symlink() or not home.is_dir():
                raise TerminalBackendError(f"home {home} is not a directory")
        name = container_name(spec.vm_id)
        cdir = self.layout.container_dir(spec.vm_id)
        cdir.mkdir(parents=True, exist_ok=True)
        os.chown(cdir, 0, ids.start)  # the mapped root's group may traverse, nobody else
        cdir.chmod(0o750)
        # cleanup reads it: a fresh root's layer goes with the VM, a kept one stays
        (cdir / _OVERLAY_POLICY).write_text(_KEPT if spec.overlay_persistent else _FRESH)
        mounts = [self.layout.lower_mount(spec.vm_id), self.layout.layer_mount(spec.vm_id)]
        if home_key is not None:
            mounts.append(self.layout.home_mount(spec.vm_id))
        for point in mounts:
            point.mkdir(mode=0o755, exist_ok=True)
        text = render_config(
            spec,
            name=name,
            ids=ids,
            lower=self.layout.lower_mount(spec.vm_id),
            upper=self.layout.layer_mount(spec.vm_id) / "upper",
            home=self.layout.home_mount(spec.vm_id) if home_key is not None else None,
            log_file=cdir / "lxc.log",
            pids_max=self.pids_max,
            fuse=self.fuse,
        )
        write_private(cdir / "config", text.encode())

    def _write_resolv_conf(self, spec: VmSpec, owner: tuple[int, int]) -> None:
        """``/etc/resolv.conf`` in the VM's upper naming ``spec.network.dns`` (IPv4
        addresses only: checked, never copied raw), world-readable, no link followed."""
        try:
            servers = [str(ipaddress.IPv4Address(a)) for a in spec.network.dns]
        except ValueError as exc:
            raise TerminalBackendError(f"VM {spec.vm_id}: bad name server: {exc}") from None
        text = "# written by the QVD HKD at every start\n"
        text += "".join(f"nameserver {server}\n" for server in servers)
        try:
            write_private_file(
                self.layout.upper(spec.di_id, spec.vm_id), RESOLV_CONF_PATH,
                text.encode(), owner, mode=0o644,
            )  # fmt: skip
        except UnsafePath as exc:
            raise TerminalBackendError(
                f"VM {spec.vm_id}: cannot write its resolv.conf: {exc}"
            ) from None

    def _bound_layer(self, layer: Path, size_mib: int) -> None:
        """Make ``layer`` (upper and LXC's overlay workdir, so both are on one file
        system) a loop-mounted sparse ext4 image of ``size_mib`` MiB: root in the desktop
        writing outside its home gets ENOSPC there and never fills the node's storage.
        The image is ``overlayfs/.images/<layer>.ext4``, made the way homes are
        (``homefs``): a fresh upper is a fresh image (mkfs + mount, ~20-40 ms), a kept
        one is mounted again (grown if ``size_mib`` grew, never shrunk).

        Chosen over a tmpfs: tmpfs pages are charged to the memory cgroup of the task
        that writes them, so a desktop's upper would take its RAM limit (256 MB by
        default), not a disk bound; and a persistent upper must be on disk anyway.

        ``size_mib`` 0 leaves a new layer unbounded (a plain directory); a kept layer
        that already has an image keeps it (its files are in it)."""
        image = home_image(layer)
        if size_mib <= 0:
            if image.is_file():
                ensure_home(layer, max(1, os.lstat(image).st_size // _MIB), kind="upper")
            return
        if not image.exists() and layer.is_dir() and not os.path.ismount(layer):
            with os.scandir(layer) as entries:
                legacy = any(True for _ in entries)
            if legacy:  # a persistent upper made before the bound: never hide its files
                log.warning("layer %s predates vm.overlay.size: it stays unbounded until "
                            "it is discarded", layer.name)  # fmt: skip
                return
        ensure_home(layer, size_mib, kind="upper")

    def _own_layer(self, layer: Path, ids: IdRange) -> None:
        """The layer (0700) and its upper (0755) belong to the VM's mapped root; a kept
        layer written under another range (or by a privileged container) is moved."""
        layer.mkdir(parents=True, exist_ok=True)
        owner = layer.lstat().st_uid
        if owner != ids.start:
            shift_owners(layer, owner if owner >= ids.count else 0, ids.start, ids.count)
        os.lchown(layer, ids.start, ids.start)
        layer.chmod(0o700)
        upper = layer / "upper"
        upper.mkdir(mode=0o755, exist_ok=True)
        if upper.is_symlink() or not upper.is_dir():
            raise TerminalBackendError(f"{upper} is not a directory")
        os.lchown(upper, ids.start, ids.start)

    def _start_mounts(self, spec: VmSpec) -> StartMounts:
        binds = [(self.layout.layer(spec.di_id, spec.vm_id), self.layout.layer_mount(spec.vm_id))]
        home_key = self._home_key(spec)
        if home_key is not None:
            binds.append((self.layout.home(home_key), self.layout.home_mount(spec.vm_id)))
        return StartMounts(
            base=self.layout.base(spec.di_id, spec.image),
            lower=self.layout.lower_mount(spec.vm_id),
            ids=self.ids.for_vm(spec.vm_id),
            binds=tuple(binds),
            detach=(self.layout.homefs, self.layout.overlayfs),
        )

    def _discard(self, layer: Path) -> None:
        """Remove a layer, its mount and its image (the files of a fresh upper go)."""
        release_home(layer)
        doomed = layer.with_name(f"deleteme-{layer.name}-{secrets.token_hex(3)}")
        try:
            layer.rename(doomed)
        except FileNotFoundError:
            pass
        else:
            shutil.rmtree(doomed, ignore_errors=True)
        home_image(layer).unlink(missing_ok=True)

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, spec: VmSpec) -> int:
        name = container_name(spec.vm_id)
        if not self.is_alive(spec.vm_id):
            self._check_lxcpath_reachable()
            self.lxc.start(name, self._start_mounts(spec))
        pid = self.lxc.pid(name)
        if pid == 0:
            log = self.layout.container_dir(spec.vm_id) / "lxc.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            raise BackendError(f"container {name} did not start: {' | '.join(tail)}")
        for (controller, key), wanted in cgroup_limits(spec, pids_max=self.pids_max).items():
            value = self.lxc.limit(name, controller, key)
            if value is not None and value != str(wanted):
                self.kill(spec.vm_id)
                raise BackendError(f"container {name}: {key} reads back {value}, not {wanted}")
        return pid

    def stop(self, vm_id: int) -> None:
        self.lxc.request_stop(container_name(vm_id))

    def kill(self, vm_id: int) -> None:
        self.lxc.kill(container_name(vm_id))

    def is_alive(self, vm_id: int) -> bool:
        return self.lxc.state(container_name(vm_id)) in _ALIVE

    def list_running(self) -> set[int]:
        return {i for n in self.lxc.running() if (i := vm_id_of(n)) is not None}

    def list_leftovers(self) -> set[int]:
        ids: set[int] = set()
        if self.layout.lxcpath.is_dir():
            for entry in self.layout.lxcpath.iterdir():
                vm_id = vm_id_of(entry.name)
                if vm_id is not None:
                    ids.add(vm_id)
        ids |= set(host_devices(self.device_prefix))
        ids |= self._mounted_layers()
        return ids | self.list_running()

    def _mounted_layers(self) -> set[int]:
        """VMs whose bounded layer is still mounted (an HKD that died in ``prepare``
        before the container directory existed leaves only that)."""
        if not self.layout.overlayfs.is_dir():
            return set()
        found: set[int] = set()
        for layer in self.layout.overlayfs.glob("*-*-overlayfs"):
            middle = layer.name.split("-")[1]
            if middle.isdigit() and os.path.ismount(layer):
                found.add(int(middle))
        return found

    def cleanup(self, vm_id: int) -> None:
        name = container_name(vm_id)
        if self.is_alive(vm_id):
            raise BackendError(f"container {name} still runs: stop it before cleaning up")
        device = host_devices(self.device_prefix).get(vm_id)
        if device is not None:
            run("ip", "link", "del", device, check=False)
        self.lxc.remove_cgroups(name)
        cdir = self.layout.container_dir(vm_id)
        try:
            fresh = (cdir / _OVERLAY_POLICY).read_text() == _FRESH
        except OSError:  # cleaned already, or prepared by an older version: keep
            fresh = False
        release_home(self.layout.home(f"{vm_id}-fs"))  # a per-login home stays mounted
        for layer in self.layout.layers_of(vm_id):
            if fresh:  # a fresh root's changes go with the VM (layer, mount, image)
                self._discard(layer)
            else:  # unmounted; its image (a kept upper's files) stays
                release_home(layer)
        shutil.rmtree(cdir, ignore_errors=True)  # last: what says the layer is fresh

    # ---- extras for operators and tests ---------------------------------------------------
    def limits(self, vm_id: int) -> dict[str, str | None]:
        """The cgroup limits of a running container, read back from cgroupfs."""
        name = container_name(vm_id)
        return {
            "memory": self.lxc.limit(name, "memory", "memory.limit_in_bytes"),
            "cpu.shares": self.lxc.limit(name, "cpu", "cpu.shares"),
            "cpu.cfs_quota_us": self.lxc.limit(name, "cpu", "cpu.cfs_quota_us"),
            "pids.max": self.lxc.limit(name, "pids", "pids.max"),
        }

    def user_namespace(self, vm_id: int) -> IdRange | None:
        """The host range of a running container's root (from its init's uid_map); None
        when it is not running or runs without a user namespace."""
        pid = self.lxc.pid(container_name(vm_id))
        if pid == 0:
            return None
        try:
            first = Path(f"/proc/{pid}/uid_map").read_text().split("\n", 1)[0].split()
        except OSError:
            return None
        if len(first) != 3 or first[:2] == ["0", "0"]:
            return None
        return IdRange(int(first[1]), int(first[2]))

    def memory_usage(self, vm_id: int) -> int:
        value = self.lxc.limit(container_name(vm_id), "memory", "memory.usage_in_bytes")
        return int(value) if value else 0
