"""Driving Debian's ``lxc-*`` tools and the cgroup v1 file system."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qvd.hkd.backends.base import BackendError
from qvd.hkd.backends.lxc.idmap import IdRange

__all__ = ["MOUNTNS_SCRIPT", "Lxc", "StartMounts", "run"]

MOUNTNS_SCRIPT = Path(__file__).with_name("mountns.py")

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def run(*argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, env=_ENV, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise BackendError(f"{argv[0]} is not installed (apt-get install lxc)") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"{' '.join(argv)}: no answer after {timeout:g} s") from None
    if check and done.returncode != 0:
        reason = (done.stderr or done.stdout).strip() or f"exit {done.returncode}"
        raise BackendError(f"{' '.join(argv)}: {reason}")
    return done


def _has_tasks(group: Path) -> bool:
    for path in [group, *group.rglob("*")]:
        procs = path / "cgroup.procs"
        with contextlib.suppress(OSError):
            if procs.is_file() and procs.read_text().strip():
                return True
    return False


@dataclass(frozen=True, slots=True)
class StartMounts:
    """What ``mountns`` mounts in the container's private start namespace."""

    base: Path  # the DI's unpacked base (host ids)
    lower: Path  # where its idmapped read-only view goes
    ids: IdRange
    binds: tuple[tuple[Path, Path], ...]  # (source, mount point) pairs
    detach: tuple[Path, ...] = ()  # mounts below these go, once the binds are made

    def argv(self) -> list[str]:
        words = [
            "--base", str(self.base), "--lower", str(self.lower),
            "--start", str(self.ids.start), "--count", str(self.ids.count),
        ]  # fmt: skip
        for source, target in self.binds:
            words += ["--bind", str(source), str(target)]
        for path in self.detach:
            words += ["--detach", str(path)]
        return [sys.executable, "-I", "-S", str(MOUNTNS_SCRIPT), *words, "--"]


class Lxc:
    """The lxc-* tools on one lxcpath, and the cgroups of its containers."""

    def __init__(self, lxcpath: Path, cgroup_root: Path) -> None:
        self.lxcpath = lxcpath
        self.cgroup_root = cgroup_root

    def _tool(self, tool: str, name: str, *args: str, check: bool = True) -> str:
        return run(tool, "-P", str(self.lxcpath), "-n", name, *args, check=check).stdout

    def start(self, name: str, mounts: StartMounts) -> None:
        """``lxc-start`` from a private mount namespace holding ``mounts``."""
        run(*mounts.argv(), "lxc-start", "-P", str(self.lxcpath), "-n", name)

    def state(self, name: str) -> str:
        if not (self.lxcpath / name / "config").exists():
            return "STOPPED"
        out = self._tool("lxc-info", name, "-s", check=False)
        return out.split(":", 1)[1].strip() if ":" in out else "STOPPED"

    def pid(self, name: str) -> int:
        text = self._tool("lxc-info", name, "-p", "-H", check=False).strip()
        return int(text) if text.isdigit() else 0

    def request_stop(self, name: str) -> None:
        """SIGTERM to the container's init (lxc.signal.halt), without waiting."""
        self._tool("lxc-stop", name, "--nowait", check=False)

    def kill(self, name: str) -> None:
        self._tool("lxc-stop", name, "--kill", check=False)

    def running(self) -> list[str]:
        if not self.lxcpath.is_dir():
            return []
        out = run("lxc-ls", "-P", str(self.lxcpath), "--running", "-1", check=False).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    # ---- cgroups (v1) -------------------------------------------------------------------
    def _groups(self, name: str) -> list[Path]:
        if not self.cgroup_root.is_dir():
            return []
        found: list[Path] = []
        for controller in self.cgroup_root.iterdir():
            for prefix in ("lxc.payload.", "lxc.monitor."):
                found.extend(controller.glob(f"{prefix}{name}"))
                found.extend(controller.glob(f"{prefix}{name}-[0-9]*"))
        return found

    def has_cgroups(self, name: str) -> bool:
        return bool(self._groups(name))

    def remove_cgroups(self, name: str) -> None:
        """Remove the (empty) cgroups LXC left for a stopped container, deepest first."""
        for group in sorted(self._groups(name), key=lambda p: len(p.parts), reverse=True):
            for child in sorted(group.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            try:
                group.rmdir()
            except FileNotFoundError:
                continue
            except OSError as exc:
                if _has_tasks(group):
                    # a live container's group (one of the same name started by another
                    # node on this machine): never ours to remove
                    continue
                raise BackendError(f"cannot remove cgroup {group}: {exc.strerror}") from None

    def limit(self, name: str, controller: str, key: str) -> str | None:
        """A cgroup value of a running container (to read limits back)."""
        for group in self.cgroup_root.joinpath(controller).glob(f"lxc.payload.{name}*"):
            path = group / key
            if path.exists():
                return path.read_text().strip()
        return None
