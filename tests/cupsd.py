"""A private CUPS daemon for tests and benches: the "client machine's" CUPS (or a
stand-in for the desktop's), with its own configuration, state, spool and logs in a
temporary directory, listening on a free loopback port and a unix socket of its own.

Queues print to files (raw, through a ``capture:`` backend of this module's own: cupsd
runs nothing for a raw job to a ``file:`` URI): ``add_file_queue`` makes one whose jobs
land in ``<root>/out/<name>.prn`` (each job replaces the file once it is whole), and
``wait_for_output`` waits until such a file holds what the test looks for. The daemon
is a child process, ended by its PID; the directory is removed on ``close`` (also when
the daemon never came up).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.conftest import end_process, free_port

__all__ = ["PrivateCupsd"]

CUPSD = "/usr/sbin/cupsd"
LPADMIN = "/usr/sbin/lpadmin"


def _cupsd_conf(port: int, sock: Path) -> str:
    # no sharing, no browsing; anyone on loopback may administer it (it is the test's)
    return f"""LogLevel info
Listen 127.0.0.1:{port}
Listen {sock}
Browsing No
BrowseLocalProtocols none
DefaultShared No
WebInterface No
DefaultAuthType None
MaxJobs 0
PreserveJobHistory No
<Location />
  Order allow,deny
  Allow from 127.0.0.1
  Allow from @LOCAL
</Location>
<Policy default>
  <Limit All>
    Order deny,allow
  </Limit>
</Policy>
"""


_CAPTURE_BACKEND = """#!/bin/sh
# a CUPS backend: no arguments = discovery (none); else job user title copies options [file]
[ "$#" -eq 0 ] && exit 0
out="${DEVICE_URI#capture:}"
if [ -n "$6" ]; then cat -- "$6"; else cat; fi >>"$out.part" && mv -- "$out.part" "$out"
"""


def _files_conf(root: Path) -> str:
    return f"""User lp
Group lp
SystemGroup root
ServerRoot {root}/etc
RequestRoot {root}/spool
CacheDir {root}/cache
StateDir {root}/state
TempDir {root}/spool/tmp
ServerBin {root}/lib
DataDir /usr/share/cups
DocumentRoot /usr/share/cups/doc-root
AccessLog {root}/log/access_log
ErrorLog {root}/log/error_log
PageLog {root}/log/page_log
Printcap {root}/state/printcap
"""


class PrivateCupsd:
    """``cupsd -f`` on ``127.0.0.1:<port>`` (``server`` is its unix socket, for
    ``lpadmin -h``/``lp -h``); a context manager."""

    def __init__(
        self, port: int | None = None, startup_timeout: float = 30.0, *, start: bool = True
    ) -> None:
        """``start=False`` only writes the configuration: ``launcher`` then starts the
        daemon the way a caller that runs ``cupsd -f`` itself would."""
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="qvd-cupsd-"))
        self.out = self.root / "out"
        self.socket = self.root / "cups.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self._prepare()
            if start:
                self._start(startup_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def server(self) -> str:
        """The ``-h`` value of the CUPS tools for this daemon (its unix socket)."""
        return str(self.socket)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "cupsd.conf"

    @property
    def files_conf(self) -> Path:
        return self.root / "etc" / "cups-files.conf"

    def launcher(self) -> Path:
        """An executable that runs this daemon's cupsd with the arguments it is given
        (``launcher -f`` = the daemon in the foreground, as the VMA starts it)."""
        path = self.root / "cupsd-launcher"
        path.write_text(f'#!/bin/sh\nexec {CUPSD} -c {self.conf} -s {self.files_conf} "$@"\n')
        path.chmod(0o755)
        return path

    def answers(self) -> bool:
        return self._answers()

    def _prepare(self) -> None:
        for sub in ("etc", "spool/tmp", "cache", "state", "log", "out", "lib/backend"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # cupsd 2.4 runs nothing for a raw job to a file: device (the output is written by
        # the last filter, and a raw queue has none): the queues use a backend of our own
        # that writes the job to its file; the daemon's other helpers are the system's
        for sub in ("daemon", "notifier"):
            (self.root / "lib" / sub).symlink_to(Path("/usr/lib/cups") / sub)
        for system in Path("/usr/lib/cups/backend").iterdir():
            (self.root / "lib" / "backend" / system.name).symlink_to(system)
        backend = self.root / "lib" / "backend" / "capture"
        backend.write_text(_CAPTURE_BACKEND)
        backend.chmod(0o755)
        # cupsd runs jobs and backends as lp: it writes the spool and the output files
        self.root.chmod(0o755)
        for sub in ("spool", "spool/tmp", "cache", "out"):
            shutil.chown(self.root / sub, "root", "lp")
            (self.root / sub).chmod(0o1770)
        self.conf.write_text(_cupsd_conf(self.port, self.socket))
        self.files_conf.write_text(_files_conf(self.root))

    def _start(self, timeout: float) -> None:
        with (self.root / "log" / "stderr").open("wb") as stderr:
            self.proc = subprocess.Popen(
                [CUPSD, "-f", "-c", str(self.conf), "-s", str(self.files_conf)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cupsd exited {self.proc.returncode}: {self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"cupsd did not listen on {self.port}: {self.log_tail()}")

    def _answers(self) -> bool:
        for family, address in ((socket.AF_INET, ("127.0.0.1", self.port)),
                                (socket.AF_UNIX, str(self.socket))):  # fmt: skip
            with socket.socket(family) as probe:
                try:
                    probe.connect(address)
                except OSError:
                    return False
        return True

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for name in ("stderr", "error_log"):
            path = self.root / "log" / name
            if path.exists():
                parts.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)

    def lpadmin(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [LPADMIN, "-h", self.server, *args], capture_output=True, text=True, timeout=30,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"lpadmin {args}: {done.stderr}")
        return done

    def add_file_queue(self, name: str, *, default: bool = False) -> Path:
        """A raw queue whose jobs are written to the returned path (appended)."""
        target = self.out / f"{name}.prn"
        self.lpadmin("-p", name, "-v", f"capture:{target}", "-E")
        if default:
            self.lpadmin("-d", name)
        return target

    def queues(self) -> list[str]:
        done = subprocess.run(
            ["lpstat", "-h", self.server, "-e"], capture_output=True, text=True, timeout=30,
            check=False, env={**os.environ, "LC_ALL": "C"},
        )  # fmt: skip
        return done.stdout.split()

    def wait_for_output(self, target: Path, marker: bytes, timeout: float = 60.0) -> bytes:
        """The content of ``target`` once it holds ``marker`` and its job is done (the
        file stopped growing and cupsd has no job left); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = target.read_bytes() if target.exists() else b""
            if marker in data and not self.pending_jobs():
                return data
            time.sleep(0.02)
        raise TimeoutError(f"{marker!r} not printed to {target} in {timeout} s: {self.log_tail()}")

    def pending_jobs(self) -> list[str]:
        done = subprocess.run(
            ["lpstat", "-h", self.server, "-o"], capture_output=True, text=True, timeout=30,
            check=False, env={**os.environ, "LC_ALL": "C"},
        )  # fmt: skip
        return done.stdout.split("\n") if done.stdout.strip() else []

    def close(self) -> None:
        if self.proc is not None:
            end_process(self.proc, grace=10)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)

    def __enter__(self) -> PrivateCupsd:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
