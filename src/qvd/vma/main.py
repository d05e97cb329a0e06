"""The VMA process: PID 1 duties (when it is PID 1), identity, logging, signals, the server.

Under ``lxc-execute`` (init.lxc is PID 1) or any init the VMA is an ordinary process.
When it is PID 1 itself (``lxc.init.cmd``) in an image whose ``vma.init`` is
``systemd``, it execs ``/sbin/init`` before anything else and systemd runs it again as
``qvd-vma.service``. Otherwise, as PID 1, it forks: the child is the VMA, and PID 1
only reaps orphans, forwards SIGTERM/SIGINT/SIGPWR/SIGHUP and systemd's halt and
poweroff signals (SIGRTMIN+3, +4) to the VMA as SIGTERM, and exits with it, which
ends the container. SIGTERM makes the VMA stop the session and exit. ``poweroff``
does the same after answering, or runs ``vma.poweroff.command``, or, under systemd,
``systemctl poweroff`` (systemd then stops the VMA with SIGTERM).

At start the VMA takes its identity: a virtual machine's from fw_cfg (secret, host
name, home disk; see ``identity``), else the secret file the HKD put in the image.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from qvd.vma.auth import SecretStore
from qvd.vma.config import DEFAULT_CONFIG_FILE, ConfigValueError, VmaConfig, load_vma_config
from qvd.vma.homedrive import HomeDrive, HomeDriveError, mount_home_drive
from qvd.vma.identity import Identity, IdentityError, install_identity, read_identity
from qvd.vma.server import make_server
from qvd.vma.session import SessionRunner, VncSessions
from qvd.vma.systemd import (
    INIT_SYSTEMD,
    SYSTEMD_INIT,
    booted_by_systemd,
    in_container,
    notify,
)

__all__ = ["exec_init", "home_preparer", "main", "run_as_init", "serve", "take_identity"]

log = logging.getLogger("qvd.vma")
# SIGRTMIN+3/+4: systemd's halt and poweroff, which the HKD sends to any container's
# init (lxc.signal.halt) since an image may boot systemd
SIGHALT = signal.SIGRTMIN + 3
SIGPOWEROFF = signal.SIGRTMIN + 4
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPWR, SIGHALT, SIGPOWEROFF)
_AS_IS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_as_init(child_pid: int) -> int:
    """PID 1 loop: reap everything, forward signals to the VMA, exit when it exits."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid, signum if signum in _AS_IS else signal.SIGTERM)

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


def take_identity(
    config: VmaConfig, *, set_hostname: Callable[[str], None] = socket.sethostname
) -> tuple[Identity | None, Path | None]:
    """The fw_cfg identity (installed: secret file written, host name set) and the
    secret file to read. A refused identity gives no secret file at all: every call
    is refused (never the image's own secret file instead)."""
    try:
        # a container sees its node's /sys: the node's own fw_cfg device is no reason
        # to wait (the identity entry, if any, would still be read and checked)
        device = None if in_container() else Path(config.get("vma.identity.fw_cfg.device"))
        identity = read_identity(
            Path(config.get("vma.identity.fw_cfg")),
            device=device,
            wait=config.get_float("vma.identity.fw_cfg.wait"),
        )
    except (IdentityError, ConfigValueError) as exc:
        log.error("identity from fw_cfg refused: %s; every call will be refused", exc)
        return None, None
    if identity is None:
        path = Path(config.get("vma.secret.file"))
        log.info("identity: no fw_cfg entry; the secret comes from %s", path)
        return None, path
    secret_file = Path(config.get("vma.identity.secret.file"))
    try:
        install_identity(identity, secret_file)
    except OSError as exc:
        log.error("cannot keep the fw_cfg secret (%s); every call will be refused", exc)
        return None, None
    try:
        set_hostname(identity.hostname)
    except OSError as exc:
        log.warning("cannot set the host name %s: %s", identity.hostname, exc)
    log.info(
        "identity: fw_cfg (vm %d, host name %s, home disk %s); secret kept in %s",
        identity.vm_id,
        identity.hostname,
        identity.home_serial or "none",
        secret_file,
    )
    return identity, secret_file


def home_preparer(config: VmaConfig, identity: Identity | None) -> Callable[[], None] | None:
    """What mounts the home drive before provisioning (None: there is none); a bad
    setting gives a preparer that fails, so provisioning fails with the reason."""
    try:
        drive = HomeDrive.from_settings(
            drive=config.get("vma.user.home.drive").strip(),
            home_serial=identity.home_serial if identity else None,
            fs=config.get("vma.user.home.fs").strip(),
            mount_point=config.get("vma.user.home.path").strip(),
            wait=config.get_float("vma.user.home.drive.wait"),
        )
    except (HomeDriveError, ConfigValueError) as exc:
        reason = str(exc)
        log.error("home drive: %s", reason)

        def refuse() -> None:
            raise HomeDriveError(reason)

        return refuse
    if drive is None:
        return None
    ready = threading.Lock()
    done: list[bool] = []

    def prepare() -> None:
        with ready:
            if done:
                return
            log.info("home drive %s: %s", drive.device, mount_home_drive(drive))
            done.append(True)

    return prepare


def serve(config_path: Path) -> int:
    """Run the VMA until SIGTERM or poweroff; returns the exit status."""
    os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    os.umask(0o022)
    config = load_vma_config(config_path)
    _setup_logging(config.log_dir)
    identity, secret_file = take_identity(config)
    secrets = SecretStore(secret_file)
    runner = SessionRunner(config, prepare_home=home_preparer(config, identity))
    server = make_server(
        config.get("vma.address"), config.port, runner, secrets, vnc=VncSessions(runner, config)
    )
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
        elif os.getpid() != 1 and booted_by_systemd():
            # systemd shuts the guest down and stops this service with SIGTERM
            asked = subprocess.run(
                ["systemctl", "--no-block", "poweroff"], capture_output=True, text=True, check=False
            )
            if asked.returncode == 0:
                log.info("poweroff: systemd shuts the system down")
                return
            log.error("systemctl poweroff failed (%d): %s", asked.returncode, asked.stderr.strip())
        stop("poweroff")

    runner.on_poweroff = poweroff

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    runner.start()
    if secret_file is not None and secrets.current() is None:
        log.warning("no VMA secret (%s): every call will be refused", secret_file)
    log.info("listening on %s:%d (pid %d)", config.get("vma.address"), config.port, os.getpid())
    notify("READY=1")
    server.serve_forever(poll_interval=0.5)
    notify("STOPPING=1")
    runner.close()
    server.server_close()
    log.info("stopped")
    return 0


def _init_of(config_path: Path) -> str:
    try:
        return load_vma_config(config_path).get("vma.init").strip()
    except (OSError, UnicodeDecodeError, ValueError):
        return ""


def exec_init(init: str = SYSTEMD_INIT) -> None:
    """Hand PID 1 to the image's own init (systemd); returns only on failure, after
    saying so: the VMA then stays the init, so the VM still answers."""
    try:
        os.execv(init, [init])  # noqa: S606 -- the image's own init, a fixed path
    except OSError as exc:
        print(f"qvd-vma: cannot exec {init} ({exc}); the VMA stays init", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qvd-vma", description="QVD VM agent")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_FILE)
    args = parser.parse_args(argv)
    if os.getpid() == 1:
        if _init_of(args.config) == INIT_SYSTEMD:
            exec_init()  # returns only if systemd cannot be started
        child = os.fork()
        if child == 0:
            os.setsid()
            os._exit(serve(args.config))
        return run_as_init(child)
    return serve(args.config)
