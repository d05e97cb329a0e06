"""The node's dnsmasq process: started on the VM bridge, fed its lease files, reloaded
(SIGHUP) when they change, restarted if it dies, stopped by its PID.

Its files live in ``path.run``/dhcp (mode 0750, group of the dnsmasq user): dnsmasq
reads the hosts and options files again on each SIGHUP, after it has dropped root, so
that user must be able to reach them. A dnsmasq a previous HKD left running (killed
with -9) is recognised by the pid file *and* its command line naming that pid file,
and ended before the new one starts; no other process is ever signalled.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from qvd.hkd.dhcp import DhcpSettings, StaticLease, dnsmasq_argv, render_hosts, render_options

__all__ = ["DhcpError", "Dnsmasq", "end_leftover"]

log = logging.getLogger("qvd.hkd.dhcp")

_READY_TIMEOUT = 15.0
_STOP_GRACE = 5.0
_RESTART_MIN, _RESTART_MAX = 0.5, 30.0


class DhcpError(Exception):
    """The node's dnsmasq cannot run as configured; the message says why."""


def _write_atomic(path: Path, text: str, gid: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.fchown(fd, -1, gid)
        os.fchmod(fd, 0o640)
        with os.fdopen(fd, "w", closefd=False) as f:
            f.write(text)
            f.flush()
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _reachable(path: Path, uid: int, gid: int) -> Path | None:
    """The first directory on the way to ``path`` that user ``uid``/group ``gid``
    cannot traverse, or None."""
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return directory
    return None


def _our_leftover(pid_file: Path) -> int | None:
    """The PID of a dnsmasq started with this very pid file that still runs."""
    try:
        pid = int(pid_file.read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    wanted = f"--pid-file={pid_file}".encode()
    if argv and Path(os.fsdecode(argv[0])).name == "dnsmasq" and wanted in argv:
        return pid
    return None


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _end_pid(pid: int, grace: float = _STOP_GRACE) -> None:
    """SIGTERM, then SIGKILL after ``grace``, to one process that is not our child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def end_leftover(pid_file: Path) -> int | None:
    """End the dnsmasq an HKD killed with -9 left running with this pid file (found
    by the file and its own command line, never by name); its PID, or None."""
    leftover = _our_leftover(pid_file)
    if leftover is not None:
        _end_pid(leftover)
    return leftover


class Dnsmasq:
    """One dnsmasq on the node's bridge. ``start`` returns once it serves; the leases
    given to ``set_leases`` are served from then on (also across restarts)."""

    def __init__(self, settings: DhcpSettings) -> None:
        self.settings = settings
        try:
            self._uid = pwd.getpwnam(settings.user).pw_uid
            self._gid = grp.getgrnam(settings.group).gr_gid
        except KeyError as exc:
            raise DhcpError(
                f"dnsmasq's user or group is missing ({exc.args[0]}): install Debian's "
                "dnsmasq-base (./qvd.sh does)"
            ) from None
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._files: tuple[str, str] = (render_hosts([]), render_options([], settings))
        self.restarts = 0

    @property
    def log_file(self) -> Path:
        return self.settings.run_dir / "dnsmasq.log"

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # ---- files ---------------------------------------------------------------------------
    def _prepare_dir(self) -> None:
        run_dir = self.settings.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chown(run_dir, 0, self._gid)
        run_dir.chmod(0o750)
        blocked = _reachable(run_dir, self._uid, self._gid)
        if blocked is not None:
            raise DhcpError(
                f"dnsmasq runs as {self.settings.user!r} and cannot reach {run_dir}: "
                f"{blocked} is not searchable for it (chmod o+x, or choose another path.run)"
            )

    def _write_files(self) -> None:
        hosts, options = self._files
        _write_atomic(self.settings.hosts_file, hosts, self._gid)
        _write_atomic(self.settings.options_file, options, self._gid)

    def set_leases(self, leases: list[StaticLease]) -> bool:
        """Serve exactly these leases; rewrite and reload only if they changed.
        Returns whether they did."""
        files = (
            render_hosts(leases, names=not self.settings.dns),
            render_options(leases, self.settings),
        )
        with self._lock:
            if files == self._files:
                return False
            self._files = files
            if self._watcher is None:  # not started: written at start
                return True
            self._write_files()
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGHUP)
            return True

    # ---- process ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start dnsmasq (ending a leftover of an earlier HKD first) and a thread that
        restarts it if it dies. Raises :class:`DhcpError` if it does not come up."""
        with self._lock:
            if self._watcher is not None:
                return
            self._prepare_dir()
            leftover = end_leftover(self.settings.pid_file)
            if leftover is not None:
                log.warning("ended dnsmasq %s left by an earlier HKD", leftover)
            self._stop.clear()
            self._write_files()
            self._spawn()
            self._watcher = threading.Thread(target=self._watch, name="hkd-dhcp", daemon=True)
            self._watcher.start()
        log.info(
            "DHCP on %s (%s, DNS %s)",
            self.settings.bridge,
            self.settings.network,
            "on" if self.settings.dns else "off",
        )

    def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.settings.pid_file.unlink()
        if self._log is None:  # one HKD's run (restarts of dnsmasq included) per log
            self._log = self.log_file.open("wb")
        try:
            proc = subprocess.Popen(
                dnsmasq_argv(self.settings),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                close_fds=True,
            )
        except OSError as exc:
            raise DhcpError(f"cannot run {self.settings.program}: {exc}") from None
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DhcpError(
                    f"dnsmasq on {self.settings.bridge} exited with {proc.returncode}: "
                    f"{self._log_tail()}"
                )
            with contextlib.suppress(OSError, ValueError):
                if int(self.settings.pid_file.read_text().strip()) == proc.pid:
                    self._proc = proc
                    return
            time.sleep(0.02)
        self._end_child(proc)
        raise DhcpError(f"dnsmasq on {self.settings.bridge} did not start within "
                        f"{_READY_TIMEOUT:g} s: {self._log_tail()}")  # fmt: skip

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(no log)"

    def _watch(self) -> None:
        delay = _RESTART_MIN
        while not self._stop.is_set():
            with self._lock:
                proc = self._proc
            if proc is None:
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, _RESTART_MAX)
            else:
                try:
                    proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
                if self._stop.is_set():
                    return
                log.error("dnsmasq (pid %s) exited with %s; restarting it",
                          proc.pid, proc.returncode)  # fmt: skip
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self._proc = None
                    self._write_files()
                    self._spawn()
                    self.restarts += 1
                    delay = _RESTART_MIN
                except (DhcpError, OSError) as exc:
                    log.error("cannot restart dnsmasq: %s", exc)

    @staticmethod
    def _end_child(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """End dnsmasq (by its PID) and the restart thread; idempotent."""
        self._stop.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=_STOP_GRACE + _READY_TIMEOUT)
        with self._lock:
            if self._proc is not None:
                self._end_child(self._proc)
                self._proc = None
            self._watcher = None
            if self._log is not None:
                self._log.close()
                self._log = None
            with contextlib.suppress(FileNotFoundError):
                self.settings.pid_file.unlink()
