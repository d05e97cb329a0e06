"""A whole session with every device on (issue #16), for tests/e2e/test_devices_all.py and
bench/devices.py.

- ``set_vm_property``: one property of a VM;
- ``enable_device_properties``: the OSF's ``vma.audio.enable``, ``vma.printing.enable``
  and ``vma.slave.enable`` properties (the L7R passes them to ``x_start``);
- the client machine's private services: a cupsd of its own (tests/cupsd.py) with one
  file-backed queue, the client's default printer; a PulseAudio of its own
  (tests/pulse.py) with a null sink, an anonymous loopback TCP listener for
  ``client.audio.port`` and a recorder of the sink's monitor; a shared folder;
- ``start_client``: one ``qvd-client`` with a ``client.conf`` of its own;
- ``DeviceClient``: ``qvd-client`` under an Xvfb of its own, its ``client.conf`` turning
  every device on (``client.printing.port``, ``client.audio.port``, ``client.share.0``…);
- ``Desktop``: commands run in the VM as the session's user, with the environment of
  the session's X programs (what a desktop application gets: ``DISPLAY``,
  ``PULSE_SERVER``…), and the VM-side state (print queues, mounts, processes).

Everything started here is ended by PID and every directory removed on ``close``, also
after a failure. The clocks of the host and of an LXC container are the same clock, so a
time taken in the desktop and one taken on the client can be subtracted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

from tests.conftest import free_port
from tests.cupsd import PrivateCupsd
from tests.pulse import PrivatePulse, Recorder

if TYPE_CHECKING:
    from tests.e2e.node import Client

__all__ = [
    "DEVICE_PROPERTIES",
    "Desktop",
    "DeviceClient",
    "DeviceRig",
    "enable_device_properties",
    "free_port",
    "node_overrides",
    "osf_of",
    "set_vm_property",
    "start_client",
    "wait_until",
]

DEVICE_PROPERTIES = {"vma.audio.enable": "1", "vma.printing.enable": "1", "vma.slave.enable": "1"}
QUEUE = "QvdDevices"  # the client's printer (the desktop's queue is named after it)
SHARE = "qvdshare"  # the shared folder's name (its directory's name on the client)


def node_overrides() -> dict[str, str]:
    """The node settings a device session needs: ``/dev/fuse`` in the desktops (the
    shares' sshfs)."""
    return {"vm.lxc.fuse": "1"}


def wait_until(check: Callable[[], object], timeout: float, what: str) -> object:
    """``check()``'s first true value, polled every 20 ms; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


# ---- the database ------------------------------------------------------------------------------
def osf_of(engine: Engine, vm_id: int) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(text("SELECT osf_id FROM vms WHERE id = :v"), {"v": vm_id}).scalar_one()
        )


def _assigned_property(conn: Connection, key: str, tenant: int, kind: str) -> int:
    """The id of property ``key`` of ``tenant`` assigned to objects of ``kind`` (``vm``,
    ``osf``), both rows made if missing."""
    prop = conn.execute(
        text("INSERT INTO properties_list (key, tenant_id) VALUES (:k, :t) "
             "ON CONFLICT (key, tenant_id) DO UPDATE SET key = EXCLUDED.key RETURNING id"),
        {"k": key, "t": tenant},
    ).scalar_one()  # fmt: skip
    return int(
        conn.execute(
            text("INSERT INTO qvd_object_properties_list (property_id, qvd_object) "
                 "VALUES (:p, :o) ON CONFLICT (property_id, qvd_object) "
                 "DO UPDATE SET qvd_object = EXCLUDED.qvd_object RETURNING id"),
            {"p": prop, "o": kind},
        ).scalar_one()
    )  # fmt: skip


def set_vm_property(engine: Engine, vm_id: int, key: str, value: str) -> None:
    """A custom property of the VM (what ``qa vm propset`` does)."""
    with engine.begin() as conn:
        tenant = conn.execute(
            text("SELECT u.tenant_id FROM vms v JOIN users u ON u.id = v.user_id WHERE v.id = :v"),
            {"v": vm_id},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO vm_properties (vm_id, property_id, value) VALUES (:v, :p, :x)"),
            {"v": vm_id, "p": _assigned_property(conn, key, tenant, "vm"), "x": value},
        )


def enable_device_properties(
    engine: Engine, osf_id: int, properties: dict[str, str] | None = None
) -> None:
    """Set ``properties`` (default: the three device switches) on the OSF, as an admin
    does in the WAT or with the API's ``__properties_changes__``."""
    with engine.begin() as conn:
        tenant = conn.execute(
            text("SELECT tenant_id FROM osfs WHERE id = :o"), {"o": osf_id}
        ).scalar_one()
        for key, value in (properties or DEVICE_PROPERTIES).items():
            conn.execute(
                text("INSERT INTO osf_properties (osf_id, property_id, value) "
                     "VALUES (:o, :p, :v)"),
                {"o": osf_id, "p": _assigned_property(conn, key, tenant, "osf"), "v": value},
            )  # fmt: skip


# ---- the desktop -----------------------------------------------------------------------------
# Run inside the VM as root: become the session's user with the environment of the
# session's X programs (the x-session the VMA started: a process of the user whose parent
# is not the user's, not a daemon), then exec argv.
_AS_USER = r"""
import os, pwd, sys
login, argv = sys.argv[1], sys.argv[2:]
entry = pwd.getpwnam(login)
daemons = {"nxagent", "pulseaudio", "sshfs", "x11vnc", "Xvfb", "nxproxy", "autocutsel"}
def owner(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return -1
def parent(pid):
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
env = None
for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
    try:
        if owner(pid) != entry.pw_uid or owner(parent(pid)) == entry.pw_uid:
            continue
        if open(f"/proc/{pid}/comm").read().strip() in daemons:
            continue
        raw = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
    except (OSError, ValueError):
        continue
    found = dict(kv.split("=", 1) for kv in raw.split("\0") if "=" in kv)
    if "DISPLAY" in found:
        env = found
        break
if env is None:
    sys.exit(f"no X session of {login} runs")
os.setgroups(os.getgrouplist(login, entry.pw_gid))
os.setgid(entry.pw_gid)
os.setuid(entry.pw_uid)
os.chdir(entry.pw_dir)
os.execvpe(argv[0], argv, env)
"""

# Run as the user: the command argv[2:], timed in the desktop by the clock argv[1]
# (time or monotonic: a container has the host's clocks); prints "<start> <end>"
_TIMED = r"""
import subprocess, sys, time
clock = getattr(time, sys.argv[1])
start = clock()
done = subprocess.run(sys.argv[2:])
print(f"{start:.6f} {clock():.6f}", flush=True)
sys.exit(done.returncode)
"""

# Run as the user: a 440 Hz tone of argv[2] seconds at half scale into the WAV file argv[1]
_TONE = r"""
import math, struct, sys, wave
rate, seconds = 48000, float(sys.argv[2])
with wave.open(sys.argv[1], "wb") as out:
    out.setnchannels(1); out.setsampwidth(2); out.setframerate(rate)
    out.writeframes(b"".join(struct.pack("<h", int(16384 * math.sin(2 * math.pi * 440 * i / rate)))
                             for i in range(int(rate * seconds))))
"""


@dataclass
class Desktop:
    """The session's desktop: VM ``vm_id`` of the node whose lxc path is ``lxcpath``, its
    user ``login``."""

    lxcpath: Path
    vm_id: int
    login: str
    _home: str = ""

    def root(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``argv`` as root in the VM's container (output captured, never checked)."""
        return subprocess.run(
            ["lxc-attach", "-P", str(self.lxcpath), "-n", f"qvd-{self.vm_id}", "--", *argv],
            capture_output=True, text=True, check=False, timeout=timeout,
        )  # fmt: skip

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``argv`` as the session's user, with the environment of its X session."""
        return self.root("python3", "-c", _AS_USER, self.login, *argv, timeout=timeout)

    def check(self, *argv: str, timeout: float = 60) -> str:
        done = self.run(*argv, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"{argv} in the desktop: rc {done.returncode}: "
                                 f"{done.stdout}{done.stderr}")  # fmt: skip
        return done.stdout

    def timed(self, *argv: str, clock: str = "time", timeout: float = 120) -> tuple[float, float]:
        """Run ``argv`` as the user; (start, end) by ``time.<clock>()`` in the desktop."""
        out = self.check("python3", "-c", _TIMED, clock, *argv, timeout=timeout)
        start, end = out.strip().splitlines()[-1].split()[:2]
        return float(start), float(end)

    @property
    def home(self) -> str:
        if not self._home:
            self._home = self.root("getent", "passwd", self.login).stdout.split(":")[5]
        return self._home

    def session_running(self) -> bool:
        return self.run("true").returncode == 0

    # printing
    def queues(self) -> list[str]:
        """The print queues the desktop's programs see."""
        done = self.run("lpstat", "-e")
        return done.stdout.split() if done.returncode == 0 else []

    def print_text(self, queue: str, marker: str) -> tuple[float, float]:
        """Print a small text job carrying ``marker``; (start, end) of ``lp`` in the
        desktop, in time.time()."""
        path = f"/tmp/qvd-job-{marker}.txt"
        body = f"QVD device test page\n{marker}\n" + "line of text\n" * 40 + "END\n"
        self.check("python3", "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
                   path, body)  # fmt: skip
        return self.timed("lp", "-d", queue, path)

    # sound
    def write_tone(self, path: str, seconds: float) -> None:
        self.check("python3", "-c", _TONE, path, str(seconds))

    def tunnel_sinks(self) -> list[str]:
        """The desktop's PulseAudio sinks that tunnel to another server (the client's)."""
        done = self.run("pactl", "list", "short", "sinks")
        return [line.split()[1] for line in done.stdout.splitlines()
                if len(line.split()) > 2 and "tunnel" in line.split()[2]]  # fmt: skip

    def pulse_running(self) -> bool:
        """A PulseAudio daemon runs in the VM (any user)."""
        return bool(self.root("pgrep", "-x", "pulseaudio").stdout.strip())

    # shares
    def mounts(self) -> list[tuple[str, str]]:
        """(mount point, type) of the fuse mounts in the VM."""
        found = []
        for line in self.root("cat", "/proc/mounts").stdout.splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2].startswith("fuse"):
                found.append((fields[1].replace("\\040", " "), fields[2]))
        return found

    def share_path(self, name: str) -> str:
        return f"{self.home}/Redirected/{name}"

    def share_mounted(self, name: str) -> bool:
        return any(point == self.share_path(name) for point, _ in self.mounts())

    def slave_key(self) -> str:
        """The session's slave key (the VMA's file; root reads it)."""
        return self.root("cat", "/var/run/qvd/slave-key").stdout.strip()


# ---- the client --------------------------------------------------------------------------------
def start_client(
    home: Path, *, display: str, port: int, login: str, password_file: Path, vm_id: int,
    settings: dict[str, str], extra_env: dict[str, str] | None = None,
) -> Client:  # fmt: skip
    """``qvd-client`` (tests/e2e/node.py's ``Client``) for VM ``vm_id`` as ``login`` through
    the L7R on 127.0.0.1:``port``, drawing on X ``display``; its home ``home``, whose
    ``client.conf`` (0600) holds ``settings``."""
    from tests.e2e.node import Client

    conf = home / ".config" / "qvd" / "client.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    conf.chmod(0o600)
    env = {**os.environ, "DISPLAY": display, "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / ".config"), "NX_ROOT": str(home / "nx"),
           **(extra_env or {})}  # fmt: skip
    argv = ["--host", "127.0.0.1", "--port", str(port), "--user", login,
            "--password-file", str(password_file), "--vm", str(vm_id),
            "--insecure", "--link", "lan"]  # fmt: skip
    return Client(argv, env)


@dataclass
class DeviceClient:
    """``qvd-client`` for VM ``vm_id`` under an Xvfb of its own, its home in ``home``."""

    home: Path
    port: int
    login: str
    password_file: Path
    vm_id: int
    settings: dict[str, str]
    extra_env: dict[str, str] = field(default_factory=dict)
    xvfb: object | None = None
    client: object | None = None
    past: list[str] = field(default_factory=list)  # the output of the clients before

    def start(self) -> None:
        from qvd.di.testbed import Xvfb

        if self.client is not None:
            self.stop()
            self.past.append(self.output())
        if self.xvfb is None:
            self.xvfb = Xvfb()
        self.client = start_client(
            self.home, display=self.xvfb.display, port=self.port, login=self.login,  # type: ignore[attr-defined]
            password_file=self.password_file, vm_id=self.vm_id, settings=self.settings,
            extra_env=self.extra_env,
        )  # fmt: skip

    def output(self) -> str:
        return self.client.output() if self.client is not None else ""  # type: ignore[attr-defined]

    def running(self) -> bool:
        return self.client is not None and self.client.proc.poll() is None  # type: ignore[attr-defined]

    def stop(self) -> None:
        """End the client (the session is suspended)."""
        if self.client is not None:
            self.client.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.stop()
        if self.xvfb is not None:
            self.xvfb.close()  # type: ignore[attr-defined]
            self.xvfb = None


@dataclass
class DeviceRig:
    """The client machine of a device session: its CUPS, PulseAudio, shared folder and
    qvd-client, all under ``root``; ``desktop`` is the session's desktop."""

    root: Path
    desktop: Desktop
    cups: PrivateCupsd
    printed: Path  # where the client's queue writes each job
    pulse: PrivatePulse
    recorder: Recorder
    share: Path
    client: DeviceClient

    def slave_port(self) -> int:
        """Where the client's nxproxy listens for client→desktop slave connections."""
        log = (self.client.home / "nx" / "nxproxy.log").read_text(errors="replace")
        found = re.findall(r"Listening to slave connections on port '[^:']*:[^:']*:(\d+)'", log)
        if not found:
            raise AssertionError("the client's nxproxy does not listen for slave connections")
        return int(found[-1])

    def wait_job(self, marker: bytes, timeout: float = 60) -> bytes:
        """The job carrying ``marker`` once the client's queue wrote it whole."""
        return self.cups.wait_for_output(self.printed, marker, timeout)

    def diagnose(self) -> str:
        parts = [f"client (run {n}):\n{out[-1500:]}" for n, out in enumerate(self.client.past)]
        parts.append(f"client:\n{self.client.output()[-3000:]}")
        nxlog = self.client.home / "nx" / "nxproxy.log"
        parts.append(f"nxproxy.log:\n{nxlog.read_text()[-1500:] if nxlog.exists() else '-'}")
        for name in ("vma.log", "nxagent.log", "x-session.log"):
            done = self.desktop.root("tail", "-n", "40", f"/var/log/qvd/{name}")
            parts.append(f"{name}:\n{done.stdout}{done.stderr}")
        parts.append(f"client cupsd:\n{self.cups.log_tail()}")
        parts.append(f"client pulseaudio:\n{self.pulse.log.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)


@contextlib.contextmanager
def device_rig(
    root: Path, *, lxcpath: Path, l7r_port: int, vm_id: int, login: str, password: str,
    extra_env: dict[str, str] | None = None, extra_settings: dict[str, str] | None = None,
) -> Iterator[DeviceRig]:  # fmt: skip
    """The client machine's services started and qvd-client connecting to ``vm_id``; all
    of it stopped and removed at the end."""
    root.mkdir(parents=True, exist_ok=True)
    share = root / "shares" / SHARE
    share.mkdir(parents=True)
    password_file = root / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    with contextlib.ExitStack() as stack:
        cups = stack.enter_context(PrivateCupsd())
        printed = cups.add_file_queue(QUEUE, default=True)
        pulse = PrivatePulse(tcp_port=free_port())
        stack.callback(pulse.close)  # its recorders too
        settings = {
            "client.printing.enable": "1",
            "client.printing.port": str(cups.port),
            "client.audio.enable": "1",
            "client.audio.port": str(pulse.tcp_port),
            "client.slave.enable": "1",
            "client.file_sharing.enable": "1",
            "client.share.0": str(share),
            "client.usb.enable": "1",
            **(extra_settings or {}),
        }
        client = DeviceClient(root / "home", l7r_port, login, password_file, vm_id, settings,
                              dict(extra_env or {}))  # fmt: skip
        stack.callback(client.close)
        rig = DeviceRig(root, Desktop(lxcpath, vm_id, login), cups, printed, pulse,
                        pulse.record(), share, client)  # fmt: skip
        stack.callback(shutil.rmtree, root, True)
        client.start()
        yield rig


def marker() -> str:
    return f"QVD-MARK-{secrets.token_hex(6)}"
