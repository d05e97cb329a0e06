"""The session runner: carries out the ``NxMachine``'s actions with real processes.

One lock guards the machine; RPC threads and observer threads feed it events through
``submit``, which queues the resulting actions for a single worker thread. Observer
threads read nxagent's output (each line may be an ``AgentSaid`` event) and wait for
the agent and the X session to exit. The worker also turns deadlines into ``Tick``s.

Security of the NX port (why ``accept=``): nxagent listens on ``4000+display`` on all
the container's addresses, because the L7R reaches it over the node bridge. A client
that presents a wrong cookie makes a *waiting* agent abort the whole session (lab
notes §3), so the port must be usable only from the tunnel. The VMA writes
``accept=<address of the x_start caller>`` into the agent's options (the L7R that asks
for the session is the one that relays it; ``vma.nxagent.accept`` may name a fixed
address instead): nxagent then refuses connections from any other address before any
cookie is read, and keeps waiting. Other VMs on the bridge can no longer kill a
session, and a client on the tunnel can only kill its own. The HKD's bridge firewall
(VM↔VM drop) is a second layer, not the only one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pwd
import queue
import secrets
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from qvd.vma.agentlog import parse_agent_line
from qvd.vma.channels import ChannelPlan, plan_channels
from qvd.vma.config import VmaConfig
from qvd.vma.devices import DEVICES, Device, DeviceContext, notify_devices, session_env
from qvd.vma.geometry import (
    Geometry,
    connected_output,
    requested_geometry,
    resize_commands,
    wants_fullscreen,
)
from qvd.vma.homedrive import HomeDriveError
from qvd.vma.homefiles import ensure_private_dir, open_home, write_private_file
from qvd.vma.hooks import HookRunner
from qvd.vma.methods import RpcError
from qvd.vma.nxoptions import agent_options, xauthority_entries
from qvd.vma.nxstate import (
    Action,
    ActionKind,
    AgentExited,
    AgentSaid,
    AgentSpawned,
    AgentSpawnFailed,
    Event,
    NxMachine,
    NxState,
    Provisioned,
    ProvisionFailed,
    SessionExited,
    StartRequested,
    Step,
    StopRequested,
    SuspendRequested,
    Tick,
)
from qvd.vma.procs import end_group
from qvd.vma.provision import ProvisionError, provision, user_spec
from qvd.vma.vnc import (
    VncRefused,
    VncRequest,
    check_state,
    clipboard_sync_argvs,
    nxproxy_argv,
    x11vnc_argv,
    xmessage_argv,
    xvfb_argv,
)

__all__ = ["SessionRunner", "VncSessions", "user_environment"]

log = logging.getLogger("qvd.vma.session")

_SIGNALS = {
    ActionKind.HUP: signal.SIGHUP,
    ActionKind.TERM: signal.SIGTERM,
    ActionKind.KILL: signal.SIGKILL,
}
_USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
LOOPBACK = "127.0.0.1"


def _read_environment_file(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return found
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        found[key.strip()] = value.strip().strip("\"'")
    return found


def user_environment(entry: pwd.struct_passwd, config: VmaConfig) -> dict[str, str]:
    """The environment of the user's processes (no VMA secrets, no root PATH)."""
    env = {"LANG": config.get("vma.default.lang"), "PATH": _USER_PATH}
    env.update(_read_environment_file(Path("/etc/default/locale")))
    env.update(_read_environment_file(Path("/etc/environment")))
    env.update(
        HOME=entry.pw_dir,
        USER=entry.pw_name,
        LOGNAME=entry.pw_name,
        SHELL=entry.pw_shell or "/bin/sh",
        XAUTHORITY=os.path.join(entry.pw_dir, ".Xauthority"),
    )
    return env


def _write_private(path: Path, data: bytes, entry: pwd.struct_passwd) -> None:
    """Replace ``path`` by a 0600 file owned by ``entry``, never through a link."""
    with open_home(str(path.parent)) as dir_fd:
        write_private_file(dir_fd, path.name, data, entry.pw_uid, entry.pw_gid)


class SessionRunner:
    """Implements the RPC ``Agent`` on one display with real nxagent and X sessions."""

    def __init__(
        self,
        config: VmaConfig,
        *,
        hooks: HookRunner | None = None,
        clock: Callable[[], float] = time.monotonic,
        prepare_home: Callable[[], None] | None = None,
    ) -> None:
        self._config = config
        self._prepare_home = prepare_home  # mounts the home drive (raises HomeDriveError)
        self._hooks = hooks or HookRunner(config)
        self._clock = clock
        self._display = config.display
        self._machine = NxMachine(config.timeouts())
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._actions: queue.Queue[Action | None] = queue.Queue()
        self._cookie = ""
        self._user: pwd.struct_passwd | None = None
        self._agent: subprocess.Popen[bytes] | None = None
        self._session: subprocess.Popen[bytes] | None = None
        self._screen: Geometry | None = None  # the size the running agent has
        self._fullscreen = False  # the agent was started fullscreen: it follows the display
        self._resume_ack = threading.Event()
        self._worker = threading.Thread(target=self._work, name="vma-session", daemon=True)
        # side channels: the plan and parameters of the last x_start, and the devices,
        # told of state changes one at a time, in order, off the session's worker
        self._plan = ChannelPlan()
        self._params: dict[str, str] = {}
        self._devices: list[Device] = DEVICES()
        self._device_calls: queue.Queue[str | None] = queue.Queue()
        self._device_worker = threading.Thread(
            target=self._notify_devices, name="vma-devices", daemon=True
        )
        self.on_poweroff: Callable[[], None] = lambda: None

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self._config.run_dir.mkdir(parents=True, exist_ok=True)
        self._config.log_dir.mkdir(parents=True, exist_ok=True)
        self._write_state(NxState.STOPPED)
        self._worker.start()
        self._device_worker.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop any session (TERM, then KILL) and the worker."""
        self.submit(StopRequested())
        if not self.wait_for({"stopped"}, timeout):
            agent = self._agent
            if agent is not None and agent.poll() is None:
                agent.kill()
            self.wait_for({"stopped"}, 2.0)
        self._actions.put(None)
        self._worker.join(timeout)
        self._device_calls.put(None)
        self._device_worker.join(timeout)

    # --- events --------------------------------------------------------------------

    def submit(self, event: Event | Tick) -> Step:
        with self._lock:
            step = self._machine.handle(event, self._clock())
            if step.after != step.before:
                log.info(
                    "session %s -> %s (%s)",
                    step.before.value,
                    step.after.value,
                    type(event).__name__,
                )
                self._write_state(step.after)
                self._changed.notify_all()
            for action in step.actions:
                self._actions.put(action)
        return step

    def wait_for(self, x_states: set[str], timeout: float) -> bool:
        """Block until ``x_state`` is one of ``x_states`` (True) or ``timeout`` passes."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._machine.x_state not in x_states:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def _write_state(self, state: NxState) -> None:
        path = self._config.run_dir / "nxagent.state"
        with contextlib.suppress(OSError):
            path.write_text(f"{state.value}:{int(time.time())}\n", encoding="utf-8")

    # --- the RPC Agent -------------------------------------------------------------

    def x_state(self) -> str:
        with self._lock:
            return self._machine.x_state

    def x_wait(self, leave: frozenset[str], timeout: float) -> str:
        """The ``x_state`` once it is none of ``leave``, or when ``timeout`` passes."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._machine.x_state in leave:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._machine.x_state

    def _accept_for(self, peer: str, params: Mapping[str, str]) -> str:
        configured = self._config.get("vma.nxagent.accept").strip()
        if configured == "any":
            return ""
        if params.get("qvd.client.transport") == "vnc":
            return LOOPBACK  # a browser session: the in-VM viewer is the NX client
        return configured or peer

    def x_start(self, params: Mapping[str, str], peer: str) -> dict[str, object]:
        if not self._hooks.action("pre-connect", params, self.x_state()):
            raise RpcError("pre-connect hook failed")
        with self._lock:
            before = self._machine.state
            fresh = before is NxState.STOPPED
            cookie = secrets.token_hex(16) if fresh else self._cookie
        if params.get("qvd.client.transport") == "vnc":
            # the in-VM viewer's Xvfb has the browser's size: the agent fills it; and the
            # viewer is on loopback: no link emulation (adsl's deliberate flush delays
            # made a browser's resume take seconds)
            params = {**params, "qvd.client.fullscreen": "1", "qvd.client.link": "lan"}
        step = self.submit(
            StartRequested(params=dict(params), accept=self._accept_for(peer, params))
        )
        if step.error is not None:
            raise RpcError(step.error)
        with self._lock:
            if fresh and step.after is NxState.PROVISIONING:
                self._cookie = cookie
            return {
                "x_state": self._machine.x_state,
                "cookie": self._cookie,
                "display": self._display,
                "port": 4000 + self._display,
            }

    def x_suspend(self) -> str:
        with self._lock:
            params = dict(self._machine.params)
        if not self._hooks.action("suspend", params, self.x_state()):
            raise RpcError("suspend hook failed")
        return self._machine_after(SuspendRequested())

    def x_stop(self) -> str:
        with self._lock:
            params = dict(self._machine.params)
        if not self._hooks.action("stop", params, self.x_state()):
            raise RpcError("stop hook failed")
        return self._machine_after(StopRequested())

    def _machine_after(self, event: Event) -> str:
        step = self.submit(event)
        if step.error is not None:
            raise RpcError(step.error)
        return step.after.value if step.after is not NxState.RESUMING else "starting"

    def poweroff(self) -> Callable[[], None]:
        with self._lock:
            params = dict(self._machine.params)
        if not self._hooks.action("poweroff", params, self.x_state()):
            raise RpcError("poweroff hook failed")
        return self.on_poweroff

    def expire(self, params: Mapping[str, str]) -> None:
        if not self._hooks.action("expire", params, self.x_state()):
            raise RpcError("expire hook failed")

    # --- the worker ----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                deadline = self._machine.deadline
            wait = 1.0 if deadline is None else min(max(deadline - self._clock(), 0.0), 1.0)
            try:
                action = self._actions.get(timeout=wait)
            except queue.Empty:
                self.submit(Tick(now=self._clock()))
                continue
            if action is None:
                return
            try:
                self._perform(action)
            except Exception:  # the worker must survive any single action
                log.exception("action %s failed", action.kind.value)

    def _perform(self, action: Action) -> None:
        kind = action.kind
        if kind is ActionKind.PROVISION:
            self._provision(action.params)
        elif kind is ActionKind.LAUNCH:
            self._launch(action)
        elif kind is ActionKind.RESUME:
            self._resume(action)
        elif kind in _SIGNALS:
            agent = self._agent
            if agent is not None and agent.poll() is None:
                agent.send_signal(_SIGNALS[kind])
        elif kind is ActionKind.START_SESSION:
            if self._session is None or self._session.poll() is not None:
                threading.Thread(target=self._start_session, daemon=True).start()
        elif kind is ActionKind.STOP_SESSION:
            self._stop_session()
        elif kind is ActionKind.HOOK_CONNECTED:
            threading.Thread(target=self._fit_screen, args=(action.params,), daemon=True).start()
            self._device_calls.put("connected")
            self._hooks.state("connected")
        elif kind is ActionKind.HOOK_SUSPENDED:
            self._device_calls.put("suspended")
            self._hooks.state("suspended")
        elif kind is ActionKind.HOOK_DISCONNECTED:
            self._device_calls.put("stopped")
            self._hooks.state("disconnected")

    def _device_context(self) -> DeviceContext | None:
        user = self._user
        if user is None:
            return None
        env = user_environment(user, self._config)
        env["DISPLAY"] = f":{self._display}"
        return DeviceContext(
            user=user, display=self._display, plan=self._plan, params=dict(self._params),
            setting=self._config.get, run_dir=self._config.run_dir,
            log_dir=self._config.log_dir, env=env,
        )  # fmt: skip

    def _notify_devices(self) -> None:
        while (state := self._device_calls.get()) is not None:
            ctx = self._device_context()
            if ctx is not None and self._devices:
                notify_devices(self._devices, ctx, state)

    def _take_plan(self, params: Mapping[str, str]) -> ChannelPlan:
        """The channels of this (re)connect; remembered for the devices."""
        self._params = dict(params)
        self._plan = plan_channels(params, self._config.get)
        return self._plan

    def _slave_key_path(self) -> Path:
        return self._config.run_dir / "slave-key"

    def _slave_env(self, user: pwd.struct_passwd) -> dict[str, str]:
        """nxagent's environment for the slave channel: the command it runs for each
        client→VM slave connection, and the file with this connect's slave key (the
        user's own, 0600: the slave server runs as the user). nxagent keeps the
        environment of its start, so it is always given: a resume may open the channel
        a first connect did not. Without the channel the file is removed (the slave
        server refuses everything without a key), and at the session's end too."""
        path = self._slave_key_path()
        key = self._params.get("qvd.slave.key", "")
        if self._plan.slave and key:
            _write_private(path, key.encode(), user)
        else:
            path.unlink(missing_ok=True)
        return {"NX_SLAVE_CMD": self._config.get("command.slave"), "QVD_SLAVE_KEY_FILE": str(path)}

    def _provision(self, params: Mapping[str, str]) -> None:
        try:
            spec = user_spec(params, self._config)
            if self._prepare_home is not None:
                self._prepare_home()
            self._user = provision(spec, lambda step: self._hooks.provisioning(step, params))
        except (ProvisionError, HomeDriveError) as exc:
            log.error("provisioning failed: %s", exc)
            self.submit(ProvisionFailed(reason=str(exc)))
            return
        self.submit(Provisioned())

    def _options_path(self) -> Path:
        return self._config.run_dir / "nxagent.conf"

    def _write_options(self, action: Action) -> None:
        assert self._user is not None
        plan = self._take_plan(action.params)
        line = agent_options(
            action.params,
            display=self._display,
            cookie=self._cookie,
            accept=action.accept,
            extra=self._config.get("vma.nxagent.extra_args"),
            channels=plan.agent_options(self._display),
        )
        _write_private(self._options_path(), (line + "\n").encode(), self._user)

    def _prepare_display(self) -> None:
        x11 = Path("/tmp/.X11-unix")  # noqa: S108 -- the X11 socket directory
        x11.mkdir(mode=0o1777, exist_ok=True)
        x11.chmod(0o1777)
        lock = Path(f"/tmp/.X{self._display}-lock")  # noqa: S108 -- the X server lock file
        for stale in (x11 / f"X{self._display}", lock):
            stale.unlink(missing_ok=True)

    def _launch(self, action: Action) -> None:
        user = self._user
        if user is None:
            self.submit(AgentSpawnFailed(reason="no user"))
            return
        if not self._hooks.action("connect", action.params, self.x_state()):
            self.submit(AgentSpawnFailed(reason="connect hook failed"))
            return
        try:
            self._write_options(action)
            xauth = Path(user.pw_dir) / ".Xauthority"
            nx_root = Path(user.pw_dir) / ".nx"
            with open_home(user.pw_dir) as home:  # the user's links are never followed
                cookie_file = xauthority_entries(self._display, self._cookie)
                write_private_file(home, xauth.name, cookie_file, user.pw_uid, user.pw_gid)
                ensure_private_dir(home, nx_root.name, user.pw_uid, user.pw_gid)
            self._prepare_display()
            env = user_environment(user, self._config)
            env.update(
                DISPLAY=f"nx/nx,options={self._options_path()}:{self._display}",
                NX_ROOT=str(nx_root),
                NX_CLIENT="/bin/true",
                **self._slave_env(user),
            )
            argv = [
                self._config.get("command.nxagent"),
                "-nolisten",
                "tcp",
                "-auth",
                str(xauth),
                "-name",
                "QVD",
                *shlex.split(self._config.get("vma.nxagent.args")),
                f":{self._display}",
            ]
            agent = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=user.pw_dir,
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=os.getgrouplist(user.pw_name, user.pw_gid),
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            log.error("cannot start nxagent: %s", exc)
            self.submit(AgentSpawnFailed(reason=str(exc)))
            return
        self._agent = agent
        # nxagent takes the first geometry it is given (in a window, with a window manager)
        self._fullscreen = wants_fullscreen(action.params)
        self._screen = None if self._fullscreen else requested_geometry(action.params)
        (self._config.run_dir / "nxagent.pid").write_text(f"{agent.pid}\n", encoding="utf-8")
        self.submit(AgentSpawned(pid=agent.pid))
        assert agent.stdout is not None
        threading.Thread(target=self._read_agent, args=(agent, agent.stdout), daemon=True).start()

    def _read_agent(self, agent: subprocess.Popen[bytes], stream: IO[bytes]) -> None:
        log_path = self._config.log_dir / "nxagent.log"
        with open(log_path, "ab", buffering=0) as sink:
            for raw in stream:
                sink.write(raw)
                if raw.startswith(b"Session: Resuming session"):
                    self._resume_ack.set()
                signal_ = parse_agent_line(raw.decode("utf-8", "replace"))
                if signal_ is not None:
                    self.submit(AgentSaid(signal=signal_))
        code = agent.wait()
        with contextlib.suppress(OSError):
            (self._config.run_dir / "nxagent.pid").unlink()
        self.submit(AgentExited(returncode=code))

    def _resume(self, action: Action) -> None:
        agent = self._agent
        if agent is None or agent.poll() is not None:
            return
        if not self._hooks.action("connect", action.params, self.x_state()):
            log.error("connect hook failed on resume; session stays suspended")
            return
        self._write_options(action)
        if self._user is not None:  # every connect has a new slave key (the L7R's)
            self._slave_env(self._user)
        self._resume_ack.clear()
        threading.Thread(target=self._hup_until_resuming, args=(agent,), daemon=True).start()

    def _hup_until_resuming(self, agent: subprocess.Popen[bytes]) -> None:
        """HUP the suspended agent until it says it resumes.

        Right after "Session suspended" nxagent may miss a HUP; it is repeated every
        half second while the agent stays silent (never after it answered, since a
        second HUP would suspend again).
        """
        end = time.monotonic() + self._config.timeouts()["initiating"]
        while time.monotonic() < end and agent.poll() is None:
            if self.x_state() != "starting":
                return
            agent.send_signal(signal.SIGHUP)
            if self._resume_ack.wait(0.5):
                return

    def _x_socket_ready(self) -> bool:
        path = f"/tmp/.X11-unix/X{self._display}"  # noqa: S108
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                return False
            return True

    def _start_session(self) -> None:
        user = self._user
        if user is None:
            return
        end = time.monotonic() + self._config.timeouts()["initiating"]
        while not self._x_socket_ready():
            if time.monotonic() > end or self.x_state() not in ("connected",):
                log.error("X display :%d never became ready", self._display)
                return
            time.sleep(0.01)
        env = user_environment(user, self._config)
        env["DISPLAY"] = f":{self._display}"
        ctx = self._device_context()
        if ctx is not None and self._devices:
            env.update(session_env(self._devices, ctx))
        command = self._config.get("command.x-session")
        try:
            with open(self._config.log_dir / "x-session.log", "ab") as errors:
                session = subprocess.Popen(
                    shlex.split(command),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    env=env,
                    cwd=user.pw_dir,
                    user=user.pw_uid,
                    group=user.pw_gid,
                    extra_groups=os.getgrouplist(user.pw_name, user.pw_gid),
                    start_new_session=True,
                )
        except (OSError, ValueError) as exc:
            log.error("cannot start the X session %r: %s", command, exc)
            self.submit(SessionExited(returncode=127))
            return
        self._session = session
        code = session.wait()
        if self._session is session:
            self.submit(SessionExited(returncode=code))

    def _x_env(self, user: pwd.struct_passwd) -> dict[str, str]:
        env = user_environment(user, self._config)
        env["DISPLAY"] = f":{self._display}"
        return env

    def _fit_screen(self, params: Mapping[str, str]) -> None:
        """Give the connected agent the requested geometry if it has another one.

        nxagent ignores a new ``geometry=`` (and ``fullscreen=``) on resume (see
        ``qvd.vma.geometry``); the screen is resized through RandR inside the session
        instead. A windowed agent resumed with fullscreen asked gets the geometry the
        client sent (its screen's size). An agent started fullscreen follows the
        client's display by itself and is left alone.
        """
        user, wanted = self._user, requested_geometry(params)
        if user is None or wanted is None or self._fullscreen or wanted == self._screen:
            return
        xrandr = self._config.get("command.xrandr")
        run = functools.partial(
            subprocess.run,
            env=self._x_env(user),
            cwd=user.pw_dir,
            user=user.pw_uid,
            group=user.pw_gid,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        try:
            output = connected_output(run([xrandr, "-q"]).stdout)
            if output is None:
                log.warning(
                    "no RandR output on :%d; geometry %s not applied", self._display, wanted
                )
                return
            done = [run(argv) for argv in resize_commands(xrandr, output, wanted)]
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("cannot resize the session to %s: %s", wanted, exc)
            return
        if done[2].returncode == 0:  # the mode is set; --fb only trims a larger screen
            self._screen = wanted
            log.info("session resized to %s", wanted)
        else:
            log.warning(
                "resizing to %s failed: %s", wanted, (done[2].stderr + done[3].stderr)[-300:]
            )

    def _stop_session(self) -> None:
        self._slave_key_path().unlink(missing_ok=True)  # no session, no slave calls
        session = self._session
        if session is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(session.pid, sig)
            try:
                session.wait(2.0)
                break
            except subprocess.TimeoutExpired:
                continue
        self._session = None


class _Viewer:
    """The in-VM NX client: nxproxy drawing into a private Xvfb, both as the user."""

    def __init__(self, processes: list[subprocess.Popen[bytes]]) -> None:
        self.processes = processes

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self.processes)

    def close(self) -> None:
        for proc in reversed(self.processes):
            end_group(proc)


class VncSessions:
    """``vnc_connect`` on a ``SessionRunner``: state checks, the viewer, x11vnc."""

    def __init__(self, runner: SessionRunner, config: VmaConfig) -> None:
        self._runner = runner
        self._config = config
        self._attach_lock = threading.Lock()

    def serve(
        self, request: VncRequest, connection: socket.socket, accepted: Callable[[], None]
    ) -> None:
        """Check the state (``VncRefused``), attach the viewer if asked, call ``accepted``
        (the server sends its 101), then run x11vnc on ``connection`` until it ends."""
        if not request.attach:
            self._serve(request, connection, accepted)
            return
        # one viewer at a time: a new browser waits until the last one has let go (the
        # L7R ends it on takeover), so that two viewers never race for the display
        if not self._attach_lock.acquire(timeout=self._config.get_float("vma.vnc.attach.timeout")):
            raise VncRefused(409, "another browser session still holds the in-VM viewer")
        try:
            self._serve(request, connection, accepted)
        finally:
            self._attach_lock.release()

    def _serve(
        self, request: VncRequest, connection: socket.socket, accepted: Callable[[], None]
    ) -> None:
        runner = self._runner
        with runner._lock:
            x_state = runner._machine.x_state
            accept = runner._machine.accept
            params = dict(runner._machine.params)
            user = runner._user
        check_state(request, x_state)
        if user is None:
            raise VncRefused(409, "the session has no user")
        viewer: _Viewer | None = None
        if request.attach:
            viewer = self._attach(user, x_state, accept, params)
        try:
            self._run_x11vnc(request, user, connection, accepted)
        finally:
            if viewer is not None:
                self._detach(viewer)

    def _user_popen(
        self, user: pwd.struct_passwd, argv: list[str], env: dict[str, str], **kwargs: object
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            argv,
            env=env,
            cwd=user.pw_dir,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=os.getgrouplist(user.pw_name, user.pw_gid),
            start_new_session=True,
            **kwargs,
        )

    def _attach(
        self, user: pwd.struct_passwd, x_state: str, accept: str, params: dict[str, str]
    ) -> _Viewer:
        runner = self._runner
        timeout = self._config.get_float("vma.vnc.attach.timeout")
        if x_state == "listening" and accept not in ("", LOOPBACK):
            raise VncRefused(
                409,
                "the session waits for an NX client from the L7R, not for the in-VM viewer "
                "(x_start with qvd.client.transport=vnc)",
            )
        if x_state == "suspended":
            step = runner.submit(StartRequested(params=params, accept=LOOPBACK))
            if step.error is not None:
                raise VncRefused(409, step.error)
        if runner.x_wait(frozenset({"starting", "provisioning"}), timeout) != "listening":
            raise VncRefused(409, f"the session is {runner.x_state()}, not listening")
        display = self._config.get_int("vma.vnc.viewer.display")
        geometry = requested_geometry(params)
        size = (
            f"{geometry.width}x{geometry.height}"
            if geometry is not None
            else self._config.get("vma.vnc.viewer.geometry")
        )
        env = user_environment(user, self._config)
        env.update(DISPLAY=f":{display}", NX_ROOT=str(Path(user.pw_dir) / ".nx"))
        log_path = self._config.log_dir / "vnc-viewer.log"
        processes: list[subprocess.Popen[bytes]] = []
        viewer = _Viewer(processes)
        try:
            with open(log_path, "ab") as sink:
                with contextlib.suppress(OSError):
                    Path(f"/tmp/.X{display}-lock").unlink()  # noqa: S108 -- a stale lock
                processes.append(
                    self._user_popen(
                        user,
                        xvfb_argv(self._config.get("command.xvfb"), display=display, geometry=size),
                        env,
                        stdin=subprocess.DEVNULL,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                    )
                )
                if not _wait_x_socket(display, timeout, processes[0]):
                    raise VncRefused(503, "the in-VM viewer's X server did not start")
                argv = nxproxy_argv(
                    self._config.get("command.nxproxy"),
                    port=4000 + runner._display,
                    cookie=runner._cookie,
                    display=runner._display,
                )
                processes.append(
                    self._user_popen(
                        user,
                        argv,
                        env,
                        stdin=subprocess.DEVNULL,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                    )
                )
            if not runner.wait_for({"connected"}, timeout):
                raise VncRefused(503, "the in-VM viewer did not attach the session")
        except VncRefused:
            viewer.close()
            raise
        except (OSError, ValueError) as exc:
            viewer.close()
            raise VncRefused(503, f"cannot start the in-VM viewer: {exc}") from None
        log.info("in-VM viewer attached the session")
        threading.Thread(target=self._watch, args=(viewer,), name="vnc-viewer", daemon=True).start()
        return viewer

    def _watch(self, viewer: _Viewer) -> None:
        """End the viewer as soon as it no longer holds the session (an NX client or
        another browser took it over: the agent suspended), so that it can never be
        mistaken for the holder of a later connection."""
        runner = self._runner
        with runner._lock:
            while viewer.alive() and runner._machine.x_state == "connected":
                runner._changed.wait(0.5)
        viewer.close()

    def _detach(self, viewer: _Viewer) -> None:
        """The browser left: suspend the session (if the viewer still holds it), then
        end the viewer. The next NX client or browser resumes it."""
        runner = self._runner
        if viewer.alive() and runner.x_state() == "connected":  # still the viewer's
            runner.submit(SuspendRequested())
            runner.wait_for({"suspended", "stopped"}, runner._config.timeouts()["suspending"])
        viewer.close()
        log.info("in-VM viewer detached")

    def _run_x11vnc(
        self,
        request: VncRequest,
        user: pwd.struct_passwd,
        connection: socket.socket,
        accepted: Callable[[], None],
    ) -> None:
        runner = self._runner
        run_dir = Path(user.pw_dir) / ".nx"
        password_name = f"vnc-{secrets.token_hex(8)}.pass"
        with open_home(user.pw_dir) as home:
            ensure_private_dir(home, run_dir.name, user.pw_uid, user.pw_gid)
        _write_private(run_dir / password_name, (request.password + "\n").encode(), user)
        password_file = run_dir / password_name
        env = user_environment(user, self._config)
        env["DISPLAY"] = f":{runner._display}"
        argv = x11vnc_argv(
            self._config.get("command.x11vnc"),
            display=runner._display,
            xauthority=str(Path(user.pw_dir) / ".Xauthority"),
            password_file=str(password_file),
            view_only=request.view_only,
            extra=shlex.split(self._config.get("vma.x11vnc.args")),
        )
        notice: subprocess.Popen[bytes] | None = None
        helpers: list[subprocess.Popen[bytes]] = []
        try:
            accepted()
            with open(self._config.log_dir / "x11vnc.log", "ab") as errors:
                server = self._user_popen(
                    user,
                    argv,
                    env,
                    stdin=connection.fileno(),
                    stdout=connection.fileno(),
                    stderr=errors,
                )
                if not request.view_only:  # a viewer that may paste into the desktop
                    helpers = self._sync_clipboard(user, env, errors)
            if request.notice:
                notice = self._show_notice(user, env, request.notice)
            server.wait()
            log.info("x11vnc ended (%d)", server.returncode)
        finally:
            with contextlib.suppress(OSError):
                password_file.unlink()  # x11vnc removes it once read; never left behind
            for helper in [*helpers, *([notice] if notice is not None else [])]:
                end_group(helper, grace=1.0)

    def _sync_clipboard(
        self, user: pwd.struct_passwd, env: dict[str, str], errors: IO[bytes]
    ) -> list[subprocess.Popen[bytes]]:
        """The clipboard helpers for one viewer (none, with a warning, when missing:
        the session works, only pasting into toolkit applications does not)."""
        started: list[subprocess.Popen[bytes]] = []
        for argv in clipboard_sync_argvs(self._config.get("command.autocutsel")):
            try:
                started.append(
                    self._user_popen(
                        user, argv, env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=errors,
                    )
                )  # fmt: skip
            except OSError as exc:
                log.warning("no clipboard sync for the browser session: %s", exc)
                break
        return started

    def _show_notice(
        self, user: pwd.struct_passwd, env: dict[str, str], text: str
    ) -> subprocess.Popen[bytes] | None:
        try:
            proc = self._user_popen(
                user,
                xmessage_argv(self._config.get("command.xmessage")),
                env,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            log.warning("cannot show the spy notice: %s", exc)
            return None
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.write(text.encode() + b"\n")
            proc.stdin.close()
        return proc


def _wait_x_socket(display: int, timeout: float, server: subprocess.Popen[bytes]) -> bool:
    path = f"/tmp/.X11-unix/X{display}"  # noqa: S108
    end = time.monotonic() + timeout
    while time.monotonic() < end and server.poll() is None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                time.sleep(0.02)
                continue
            return True
    return False
