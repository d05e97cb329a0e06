"""What runs around a desktop container in tests and benchmarks: a private bridge, the
client's display and nxproxy, another "VM" on the bridge; everything named uniquely and
removed on ``close()``:

* ``Bridge``: a host bridge ``qvdt<hex>`` on a private /24 that no route on the host
  overlaps, host address ``.1``; no NAT, no forwarding, containers get no default route.
  ``check_route`` asserts with ``ip route get`` that an address is reached through it.
* the container itself is the HKD's: ``qvd.hkd.backends.lxc.testbed.Container`` (the
  LXC backend, so the node's own configuration), plugged into a ``Bridge`` of here.
* ``Xvfb`` and ``NxProxy``: the client side of an NX session.
* ``NetnsPeer``: a network namespace plugged into the bridge, standing for another VM.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Bridge",
    "NetnsPeer",
    "NxProxy",
    "TestbedError",
    "Xvfb",
    "check_route",
]

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class TestbedError(Exception):
    """The testbed could not set something up."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, env=_ENV, check=False)
    if check and done.returncode != 0:
        raise TestbedError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done


def check_route(address: str, device: str) -> None:
    """Refuse to talk to ``address`` unless the host routes it through ``device``."""
    out = _run("ip", "-o", "route", "get", address).stdout
    if f" dev {device} " not in f" {out} ":
        raise TestbedError(f"{address} is not routed via {device}: {out.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    used = []
    for line in _run("ip", "-4", "-o", "route", "show", "table", "all").stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unreachable", "blackhole", "prohibit"):
            word = line.split()[1]
        with contextlib.suppress(ValueError):
            if word != "default":
                used.append(ipaddress.ip_network(word, strict=False))
    for line in _run("ip", "-4", "-o", "addr", "show").stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            used.append(ipaddress.ip_network(parts[parts.index("inet") + 1], strict=False))
    for _ in range(200):
        candidate = ipaddress.IPv4Network(f"10.213.{secrets.randbelow(250) + 2}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise TestbedError("no free private /24 under 10.213.0.0/16")


@dataclass
class Bridge:
    """A private host bridge; ``address(n)`` is ``<subnet>.n``."""

    name: str = field(default_factory=lambda: f"qvdt{secrets.token_hex(3)}")
    subnet: ipaddress.IPv4Network = field(default_factory=_free_subnet)

    def __post_init__(self) -> None:
        _run("ip", "link", "add", self.name, "type", "bridge")
        try:
            _run("ip", "addr", "add", f"{self.address(1)}/24", "dev", self.name)
            _run("ip", "link", "set", self.name, "up")
        except TestbedError:
            self.close()
            raise

    def address(self, host: int) -> str:
        return str(self.subnet.network_address + host)

    @property
    def host_address(self) -> str:
        return self.address(1)

    def close(self) -> None:
        _run("ip", "link", "del", self.name, check=False)


class Xvfb:
    """A private X server on a free display number."""

    def __init__(self, size: str = "1024x768x24") -> None:
        self.number = self._free_display()
        self.display = f":{self.number}"
        self.proc = subprocess.Popen(
            ["Xvfb", self.display, "-screen", "0", size, "-nolisten", "tcp", "-noreset"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_ENV,
        )
        socket_path = Path(f"/tmp/.X11-unix/X{self.number}")  # noqa: S108
        end = time.monotonic() + 10
        while not socket_path.exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.close()
                raise TestbedError(f"Xvfb {self.display} did not start")
            time.sleep(0.02)

    @staticmethod
    def _free_display() -> int:
        for _ in range(100):
            number = 200 + secrets.randbelow(700)
            lock = Path(f"/tmp/.X{number}-lock")  # noqa: S108 -- X server lock file
            sock = Path(f"/tmp/.X11-unix/X{number}")  # noqa: S108 -- X server socket
            if not lock.exists() and not sock.exists():
                return number
        raise TestbedError("no free X display number")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class NxProxy:
    """The client side of an NX session: ``nxproxy -S`` drawing into an X display."""

    def __init__(
        self,
        *,
        display: str,
        host: str,
        port: int,
        cookie: str,
        nx_display: int,
        root: Path,
        netns: str | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "nxproxy.log"
        options = f"nx/nx,connect={host},port={port},cookie={cookie}:{nx_display}"
        argv = ["nxproxy", "-S", options]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        env = dict(_ENV, DISPLAY=display, NX_ROOT=str(root), HOME=str(root))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=root,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, *texts: str, timeout: float) -> bool:
        """Wait until the log holds one of ``texts``; False on timeout or exit without."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            log = self.log()
            if any(text in log for text in texts):
                return True
            if self.proc.poll() is not None:
                return any(text in self.log() for text in texts)
            time.sleep(0.02)
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class NetnsPeer:
    """A network namespace with one address on the bridge (another "VM")."""

    def __init__(self, bridge: Bridge, host: int) -> None:
        self.name = f"qvdt-peer-{secrets.token_hex(3)}"
        self.address = bridge.address(host)
        self._outer = f"vp{secrets.token_hex(4)}"
        inner = f"vi{secrets.token_hex(4)}"
        _run("ip", "netns", "add", self.name)
        try:
            _run("ip", "link", "add", self._outer, "type", "veth", "peer", "name", inner)
            _run("ip", "link", "set", inner, "netns", self.name)
            _run("ip", "link", "set", self._outer, "master", bridge.name, "up")
            ns = ("ip", "netns", "exec", self.name)
            _run(*ns, "ip", "link", "set", "lo", "up")
            _run(*ns, "ip", "addr", "add", f"{self.address}/24", "dev", inner)
            _run(*ns, "ip", "link", "set", inner, "up")
        except TestbedError:
            self.close()
            raise

    def close(self) -> None:
        _run("ip", "link", "del", self._outer, check=False)
        _run("ip", "netns", "del", self.name, check=False)
