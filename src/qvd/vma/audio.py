"""Sound: the session's PulseAudio plays through the NX multimedia channel to the client.

When the session's plan has sound (``vma.audio.enable``), the desktop gets
``PULSE_SERVER=unix:<runtime>/pulse/native`` (``<runtime>`` = ``path.user.runtime``/
``<uid>``, 0700, the user's) and the VMA runs the user's own PulseAudio, as the user,
from a configuration it writes itself (no value of the client in it):

- ``module-native-protocol-unix`` on that socket, without cookies: only the user's own
  processes (PulseAudio checks the peer's uid) in a directory only the user can enter;
- ``module-tunnel-sink-new`` (sink ``QVD_Audio``) to ``tcp:127.0.0.1:<7000+display>``,
  where nxagent listens for the multimedia channel; nxagent relays each connection to
  the client's nxproxy, which connects it to the client's PulseAudio (``media=<port>``).
  ``reconnect_interval_ms`` keeps the module when the channel drops (without it the
  module unloads itself: lab notes §3);
- ``module-always-sink``: while the tunnel is down a null sink takes the streams, which
  move back to ``QVD_Audio`` when it returns (PulseAudio moves streams that follow the
  default sink).

The daemon is spawned when the X session's environment is made (``session_env``), so
it is there before the desktop's first program; its PID file is in
``PULSE_RUNTIME_PATH``, which the desktop gets too: a desktop's own
``pulseaudio --start`` (Debian's XDG autostart ``start-pulseaudio-x11``) then finds it
running instead of starting a second one on the same socket.

On ``suspended`` the tunnel module is unloaded, as the original does (nothing knocks on
a closed channel every second); on ``connected`` after a resume it is loaded again. On
``stopped`` the PulseAudio ends, by its PID (TERM, then KILL).

Compression: the original loaded the tunnel with ``compression=opus`` (its own
PulseAudio build); Debian's PulseAudio 16 ``module-tunnel-sink-new`` has no such
argument. An original client's ``qvd.client.audio.compression.enable`` alone therefore
keeps the plain tunnel (its side speaks the PulseAudio protocol). The project's client
adds ``qvd.client.audio.codec=opus`` (``ChannelPlan.opus``): then ``QVD_Audio`` is a
null sink (``module-null-sink``) and ``qvd.vma.opus`` encodes its monitor to Opus on the
media channel while the session is connected (stopped on suspend, started again on
resume). A resume may switch between the two: ``connected`` swaps the modules.

Standard library only (the VMA runs on the image's own ``python3``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from qvd.vma.channels import media_port
from qvd.vma.devices import DeviceContext
from qvd.vma.homefiles import HomeError, ensure_private_dir, open_home, write_private_file
from qvd.vma.opus import (
    EncoderLaunch,
    OpusEncoder,
    OpusSettingError,
    encoder_argv,
    encoder_env,
    opus_options,
)
from qvd.vma.procs import end_group

__all__ = [
    "NULL_MODULE",
    "SINK_NAME",
    "TUNNEL_MODULE",
    "AudioDevice",
    "AudioError",
    "pulse_argv",
    "pulse_config",
    "pulse_paths",
    "tunnel_arguments",
]

log = logging.getLogger(__name__)

SINK_NAME = "QVD_Audio"
TUNNEL_MODULE = "module-tunnel-sink-new"
NULL_MODULE = "module-null-sink"  # QVD_Audio when the channel carries Opus
RECONNECT_MS = 1000
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]{1,200}$")  # a path PulseAudio's parser keeps whole
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_START_TIMEOUT = 15.0


class AudioError(Exception):
    """The session's PulseAudio cannot be set up."""


class PulsePaths:
    """Where one user's session PulseAudio lives (all under the user's runtime dir)."""

    def __init__(self, runtime_root: Path, uid: int) -> None:
        self.runtime_root = runtime_root  # /run/user
        self.runtime = runtime_root / str(uid)  # /run/user/<uid>, 0700, the user's
        self.pulse = self.runtime / "pulse"  # PULSE_RUNTIME_PATH, 0700
        self.state = self.pulse / "state"  # PULSE_STATE_PATH (nothing written in the home)
        self.socket = self.pulse / "native"
        self.config = self.pulse / "qvd-session.pa"
        if not _SAFE_PATH.match(str(self.socket)):
            raise AudioError(f"path.user.runtime {str(runtime_root)[:80]!r} is not a plain path")

    @property
    def server(self) -> str:
        return f"unix:{self.socket}"


def pulse_paths(ctx: DeviceContext) -> PulsePaths:
    return PulsePaths(Path(ctx.setting("path.user.runtime") or "/run/user"), ctx.user.pw_uid)


def tunnel_arguments(display: int) -> list[str]:
    """The tunnel sink's module arguments (the NX multimedia port of ``display``)."""
    return [
        f"server=tcp:127.0.0.1:{media_port(display)}",
        f"sink_name={SINK_NAME}",
        f"reconnect_interval_ms={RECONNECT_MS}",
    ]


def null_sink_arguments() -> list[str]:
    """The null sink the Opus encoder reads (``QVD_Audio.monitor``)."""
    return [f"sink_name={SINK_NAME}", f"sink_properties=device.description={SINK_NAME}"]


def output_module(display: int, opus: bool) -> tuple[str, list[str]]:
    """The module (and its arguments) that makes ``QVD_Audio``: the tunnel, or the null
    sink the Opus encoder reads."""
    if opus:
        return NULL_MODULE, null_sink_arguments()
    return TUNNEL_MODULE, tunnel_arguments(display)


def pulse_config(paths: PulsePaths, display: int, opus: bool = False) -> str:
    """The ``-F`` script of the session's PulseAudio (every value is the VMA's own)."""
    module, arguments = output_module(display, opus)
    return "\n".join(
        [
            "# written by the QVD VMA for this session; changes are lost at the next one",
            f"load-module module-native-protocol-unix socket={paths.socket} auth-cookie-enabled=0",
            f"load-module {module} {' '.join(arguments)}",
            "load-module module-always-sink",
            "",
        ]
    )


def pulse_argv(pulseaudio: str, paths: PulsePaths) -> list[str]:
    return [
        pulseaudio, "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=yes",
        "--system=no", "--realtime=no", "--high-priority=no", "--log-target=stderr",
        "-F", str(paths.config),
    ]  # fmt: skip


def pulse_env(env: Mapping[str, str], paths: PulsePaths) -> dict[str, str]:
    """The daemon's environment: the user's, without DISPLAY (no X11 or D-Bus autolaunch),
    with its runtime and state under the runtime dir."""
    out = {k: v for k, v in env.items() if k not in ("DISPLAY", "PULSE_SERVER")}
    out.update(
        XDG_RUNTIME_DIR=str(paths.runtime),
        PULSE_RUNTIME_PATH=str(paths.pulse),
        PULSE_STATE_PATH=str(paths.state),
    )
    return out


def _private_dir(parent: Path, name: str, uid: int, gid: int) -> None:
    """``parent/name`` a real directory, owned by uid:gid, mode 0700 (never via a link)."""
    with open_home(str(parent)) as parent_fd:
        ensure_private_dir(parent_fd, name, uid, gid)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


class AudioDevice:
    """The VMA's sound device (``qvd.vma.devices.Device``)."""

    name = "audio"

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._encoder: OpusEncoder | None = None
        self._lock = threading.Lock()

    # --- Device --------------------------------------------------------------------

    def session_env(self, ctx: DeviceContext) -> dict[str, str]:
        """``PULSE_SERVER`` and ``PULSE_RUNTIME_PATH`` (where the daemon's PID file is:
        a desktop's own ``pulseaudio --start`` finds it running); the daemon is spawned
        here already, so it is there before any program of the desktop."""
        if not ctx.plan.audio:
            return {}
        paths = pulse_paths(ctx)
        with self._lock:
            if not self._running():
                self._spawn(ctx, paths)
        return {"PULSE_SERVER": paths.server, "PULSE_RUNTIME_PATH": str(paths.pulse)}

    def connected(self, ctx: DeviceContext) -> None:
        with self._lock:
            if not ctx.plan.audio:
                self._stop()
                return
            if not self._running():
                self._spawn(ctx, pulse_paths(ctx))
            self._wait_answering(ctx)
            # after a resume: the tunnel was unloaded on suspend; and the new client may
            # want the other kind of channel than the last one
            self._ensure_output(ctx)
            if ctx.plan.opus:
                self._start_encoder(ctx)

    def suspended(self, ctx: DeviceContext) -> None:
        with self._lock:
            self._stop_encoder()
            if self._running():
                for index in self._modules(ctx, TUNNEL_MODULE):
                    self._pactl(ctx, "unload-module", str(index))

    def stopped(self, ctx: DeviceContext) -> None:
        with self._lock:
            self._stop()

    # --- the daemon ----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _running(self) -> bool:
        return self.pid is not None

    def _prepare(self, ctx: DeviceContext, paths: PulsePaths) -> None:
        user = ctx.user
        paths.runtime_root.mkdir(mode=0o755, parents=True, exist_ok=True)
        try:
            _private_dir(paths.runtime_root, paths.runtime.name, user.pw_uid, user.pw_gid)
            _private_dir(paths.runtime, paths.pulse.name, user.pw_uid, user.pw_gid)
            _private_dir(paths.pulse, paths.state.name, user.pw_uid, user.pw_gid)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(paths.socket)  # a dead daemon's socket
            with open_home(str(paths.pulse)) as pulse_fd:
                config = pulse_config(paths, ctx.display, ctx.plan.opus).encode()
                write_private_file(pulse_fd, paths.config.name, config, user.pw_uid, user.pw_gid)
        except HomeError as exc:
            raise AudioError(f"the PulseAudio runtime directory: {exc}") from None

    def _spawn(self, ctx: DeviceContext, paths: PulsePaths) -> None:
        self._prepare(ctx, paths)
        user = ctx.user
        argv = pulse_argv(ctx.setting("command.pulseaudio") or "/usr/bin/pulseaudio", paths)
        with open(ctx.log_dir / "pulseaudio.log", "ab") as log_file:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=pulse_env(ctx.env, paths),
                cwd=user.pw_dir,
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=os.getgrouplist(user.pw_name, user.pw_gid),
                start_new_session=True,
            )
        log.info("PulseAudio %d started for the session's sound", self._proc.pid)

    def _wait_answering(self, ctx: DeviceContext) -> None:
        end = time.monotonic() + _START_TIMEOUT
        while self._pactl(ctx, "info") is None:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self._proc = None
                raise AudioError(f"PulseAudio exited ({code}); see pulseaudio.log")
            if time.monotonic() > end:
                self._stop()
                raise AudioError("PulseAudio did not answer on its socket")
            time.sleep(0.05)

    def _stop(self) -> None:
        self._stop_encoder()
        proc, self._proc = self._proc, None
        if proc is not None:
            end_group(proc, grace=5.0)

    # --- pactl, as the user ----------------------------------------------------------

    def _pactl(self, ctx: DeviceContext, *argv: str) -> str | None:
        """``pactl argv`` as the session's user on the session's daemon; its output, or
        None when it failed."""
        paths = pulse_paths(ctx)
        env = {k: v for k, v in ctx.env.items() if k != "DISPLAY"}
        env["PULSE_SERVER"] = paths.server
        user = ctx.user
        try:
            done = subprocess.run(
                [ctx.setting("command.pactl") or "/usr/bin/pactl", *argv],
                capture_output=True, text=True, env=env, cwd=user.pw_dir,
                user=user.pw_uid, group=user.pw_gid,
                extra_groups=os.getgrouplist(user.pw_name, user.pw_gid),
                timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("pactl %s: %s", argv[0], exc)
            return None
        if done.returncode != 0:
            if argv[0] != "info":
                log.warning("pactl %s: %s", argv[0], done.stderr.strip()[-300:])
            return None
        return done.stdout

    def _modules(self, ctx: DeviceContext, name: str) -> list[int]:
        """Indexes of the loaded ``name`` modules that make ``QVD_Audio`` (the always-sink's
        own null sink is not one of them)."""
        listing = self._pactl(ctx, "list", "short", "modules") or ""
        found = []
        for line in listing.splitlines():
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] != name or not fields[0].isdigit():
                continue
            ours = any(f"sink_name={SINK_NAME}" in field.split() for field in fields[2:])
            if name == NULL_MODULE and not ours:
                continue
            found.append(int(fields[0]))
        return found

    def _ensure_output(self, ctx: DeviceContext) -> None:
        """``QVD_Audio`` made by the module this plan wants (the other one unloaded)."""
        want, arguments = output_module(ctx.display, ctx.plan.opus)
        other = TUNNEL_MODULE if want == NULL_MODULE else NULL_MODULE
        for index in self._modules(ctx, other):
            self._pactl(ctx, "unload-module", str(index))
        if not self._modules(ctx, want):
            if self._pactl(ctx, "load-module", want, *arguments) is None:
                raise AudioError(f"cannot load {want}")
            if want == NULL_MODULE:  # (a tunnel's sink appears only once it connects)
                self._pactl(ctx, "set-default-sink", SINK_NAME)

    # --- the Opus encoder (qvd.vma.opus) -----------------------------------------------

    def _start_encoder(self, ctx: DeviceContext) -> None:
        if self._encoder is not None:
            return
        try:
            options = opus_options(ctx.setting)
            argv = encoder_argv(
                ctx.setting("command.gst_launch") or "/usr/bin/gst-launch-1.0",
                SINK_NAME, media_port(ctx.display), options,
            )  # fmt: skip
        except OpusSettingError as exc:
            raise AudioError(f"Opus sound: {exc}") from None
        user = ctx.user
        self._encoder = OpusEncoder(
            EncoderLaunch(
                argv=argv, env=encoder_env(ctx.env, pulse_paths(ctx).server, user.pw_dir),
                uid=user.pw_uid, gid=user.pw_gid,
                groups=os.getgrouplist(user.pw_name, user.pw_gid), cwd=user.pw_dir,
                log_file=ctx.log_dir / "opus-encoder.log",
            )
        )  # fmt: skip

    def _stop_encoder(self) -> None:
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            encoder.stop()

    @property
    def encoder_pid(self) -> int | None:
        encoder = self._encoder
        return None if encoder is None else encoder.pid
