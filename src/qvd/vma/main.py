"""The VMA process: PID 1 duties (when it is PID 1), logging, signals, the server.

Under ``lxc-execute`` (init.lxc is PID 1) or any init the VMA is an ordinary process.
When it is PID 1 itself (``lxc.init.cmd``), it forks: the child is the VMA, and PID 1
only reaps orphans, forwards SIGTERM/SIGINT/SIGPWR/SIGHUP to the VMA and exits with
it, which ends the container. SIGTERM makes the VMA stop the session and exit.
``poweroff`` does the same after answering (or runs ``vma.poweroff.command``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from qvd.vma.auth import SecretStore
from qvd.vma.config import DEFAULT_CONFIG_FILE, load_vma_config
from qvd.vma.server import make_server
from qvd.vma.session import SessionRunner

__all__ = ["main", "run_as_init", "serve"]

log = logging.getLogger("qvd.vma")
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPWR)


def run_as_init(child_pid: int) -> int:
    """PID 1 loop: reap everything, forward signals to the VMA, exit when it exits."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid, signal.SIGTERM if signum == signal.SIGPWR else signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == child_pid:
            return os.waitstatus_to_exitcode(status) & 0xFF


def _setup_logging(log_dir: Path) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_dir / "vma.log"))
    except OSError:
        pass
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=handlers,
    )


def serve(config_path: Path) -> int:
    """Run the VMA until SIGTERM or poweroff; returns the exit status."""
    os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    os.umask(0o022)
    config = load_vma_config(config_path)
    _setup_logging(config.log_dir)
    secrets = SecretStore(Path(config.get("vma.secret.file")))
    runner = SessionRunner(config)
    server = make_server(config.get("vma.address"), config.port, runner, secrets)
    done = threading.Event()

    def stop(reason: str) -> None:
        if done.is_set():
            return
        done.set()
        log.info("stopping: %s", reason)
        threading.Thread(target=server.shutdown, daemon=True).start()

    def poweroff() -> None:
        runner.close()
        command = config.get("vma.poweroff.command").strip()
        if command:
            subprocess.run(command.split(), check=False)
        stop("poweroff")

    runner.on_poweroff = poweroff

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    runner.start()
    if secrets.current() is None:
        log.warning("no VMA secret (%s): every call will be refused", config.get("vma.secret.file"))
    log.info("listening on %s:%d (pid %d)", config.get("vma.address"), config.port, os.getpid())
    server.serve_forever(poll_interval=0.5)
    runner.close()
    server.server_close()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qvd-vma", description="QVD VM agent")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_FILE)
    args = parser.parse_args(argv)
    if os.getpid() == 1:
        child = os.fork()
        if child == 0:
            os.setsid()
            os._exit(serve(args.config))
        return run_as_init(child)
    return serve(args.config)
