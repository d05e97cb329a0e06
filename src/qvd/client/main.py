"""``qvd-client``: the command line, the TLS connection and the session.

qvd-client [--host H] [--port P] [--user U | --token T] [--password-file F]
           [--list | --vm ID | --stop [ID] | --restart [ID]]
           [--geometry WxH] [--fullscreen | --window] [--keyboard K] [--link L]
           [--insecure | --ca FILE] [--config FILE]

Without ``--vm`` the desktops are listed: one is connected straight away, several get
a menu. The password is asked for when neither a file nor the configuration gives one.
Values missing from the command line come from ``~/.config/qvd/client.conf`` (the
original client's ``client.*`` names, see ``qvd.client.settings``). The geometry
defaults to the size of the client's screen. SIGTERM, SIGHUP and SIGINT end nxproxy
and remove the client's temporary files before the client exits.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from qvd.client import settings
from qvd.client.picker import NoDesktop, choose
from qvd.client.protocol import (
    ClientError,
    ClientProtocol,
    Done,
    Progress,
    Switched,
    VmList,
    basic_auth,
    bearer_auth,
)

__all__ = ["Terminated", "exchange", "main", "parse_args", "tls_context"]

_FALLBACK_GEOMETRY = "1024x768"


class Terminated(BaseException):
    """A signal asked the client to end (raised in the main thread by its handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="qvd-client", description="Connect to a QVD desktop.")
    p.add_argument("--config", type=Path, help="settings file (default ~/.config/qvd/client.conf)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--user")
    p.add_argument("--password-file", type=Path, help="read the password from this file")
    p.add_argument("--token", help="log in with this bearer token instead of a password")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list your desktops")
    what.add_argument("--vm", type=int, help="connect to this desktop id")
    what.add_argument("--stop", nargs="?", type=int, const=0, metavar="ID", help="stop a desktop")
    what.add_argument(
        "--restart", nargs="?", type=int, const=0, metavar="ID", help="stop, then connect"
    )
    p.add_argument("--geometry", help="desktop size WxH (default: your screen's)")
    screen = p.add_mutually_exclusive_group()
    screen.add_argument("--fullscreen", action="store_true", default=None)
    screen.add_argument("--window", dest="fullscreen", action="store_false")
    p.add_argument("--keyboard")
    p.add_argument("--link", help="modem, isdn, adsl, wan, lan or local")
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--insecure", action="store_true", default=None, help="accept any cert")
    trust.add_argument("--ca", type=Path, help="CA file that signed the server certificate")
    return p.parse_args(argv)


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    host: str
    port: int
    user: str | None
    token: str | None
    password_file: Path | None
    password: str | None
    geometry: str | None
    fullscreen: bool | None
    keyboard: str
    link: str
    insecure: bool
    ca: Path | None
    conf: settings.ClientSettings = field(  # the file's values (devices read theirs)
        default_factory=lambda: settings.ClientSettings({})
    )


def resolve(args: argparse.Namespace, conf: settings.ClientSettings) -> Options:
    """Command line over the settings file; every value checked as the file's are."""

    def pick(given: object, key: str) -> str | None:
        if given is None:
            return conf.get(key)
        return settings.check(key, str(given))

    host = pick(args.host, "client.host.name")
    port = pick(args.port, "client.host.port") or "8443"
    user = pick(args.user, "client.user.name")
    if not host:
        raise settings.SettingsError("no host: give --host (it is remembered after the first use)")
    if not user and not args.token:
        raise settings.SettingsError("no user: give --user or --token")
    ca = args.ca if args.ca is not None else conf.get("client.ssl.ca_file")
    fullscreen = args.fullscreen if args.fullscreen is not None else conf.flag("client.fullscreen")
    insecure = (
        args.insecure if args.insecure is not None else conf.flag("client.ssl.allow_untrusted")
    )
    return Options(
        host=host,
        port=int(port),
        user=user,
        token=args.token,
        password_file=args.password_file,
        password=conf.get("client.user.password"),
        geometry=pick(args.geometry, "client.geometry"),
        fullscreen=fullscreen,
        keyboard=pick(args.keyboard, "client.keyboard") or "pc105/us",
        link=pick(args.link, "client.link") or "adsl",
        insecure=bool(insecure),
        ca=Path(ca) if ca else None,
        conf=conf,
    )


def _authorization(opts: Options) -> str:
    if opts.token:
        return bearer_auth(opts.token)
    assert opts.user is not None
    if opts.password_file is not None:
        try:
            password = opts.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise settings.SettingsError(f"{opts.password_file}: {exc.strerror}") from None
    elif opts.password is not None:
        password = opts.password
    else:
        password = getpass.getpass(f"Password for {opts.user}@{opts.host}: ")
    return basic_auth(opts.user, password)


def tls_context(opts: Options) -> ssl.SSLContext:
    """The client's TLS context. With ``--insecure`` nothing is verified, so the
    system's CA store is not loaded (~20 ms of start-up); a ``--ca`` file is the only
    trust; otherwise the system's CAs and the host name are checked."""
    if opts.insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(opts.ca) if opts.ca else None)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _tls(opts: Options) -> ssl.SSLSocket:
    ctx = tls_context(opts)
    raw = socket.create_connection((opts.host, opts.port), timeout=30)
    # after the upgrade this socket carries the NX link: see qvd.client.nx.no_delay
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=opts.host)
    except BaseException:
        raw.close()
        raise
    tls.settimeout(600)  # a connect may wait that long for its VM
    return tls


def exchange(
    sock: ssl.SSLSocket,
    proto: ClientProtocol,
    request: bytes,
    on_progress: Callable[[str], None] = lambda info: None,
) -> VmList | Done | Switched:
    """Send ``request`` and read to its answer; each 102's text goes to ``on_progress``."""
    sock.sendall(request)
    while True:
        event = proto.next_event()
        if event is None:
            proto.receive_data(sock.recv(65536))
        elif isinstance(event, Progress):
            on_progress(event.info)
        elif isinstance(event, ClientError):
            raise event
        else:
            return event


def _show(info: str) -> None:
    print(f"... {info}", flush=True)


def _print_table(vms: list[dict[str, object]]) -> None:
    print(f"{'ID':>6}  {'NAME':<24} {'STATE':<10} BLOCKED")
    for vm in sorted(vms, key=lambda vm: int(str(vm["id"]))):
        print(f"{vm['id']!s:>6}  {vm['name']!s:<24} {vm['state']!s:<10} {vm['blocked']}")


def session_params(opts: Options, display: str | None) -> dict[str, str]:
    """The ``qvd.client.*`` parameters of a connect: geometry defaults to the screen's.

    Without a window manager nxagent always goes fullscreen, and sizes the desktop at
    3/4 of the screen unless asked for fullscreen (qvd.client.display): there the
    client asks for it.
    """
    from qvd.client.display import probe_display  # ctypes: not before the socket opens

    info = probe_display(display) if display else None
    geometry = opts.geometry or (info.geometry if info else _FALLBACK_GEOMETRY)
    fullscreen = bool(opts.fullscreen)
    if fullscreen and info is not None:
        geometry = info.geometry  # what a resumed session is sized to (qvd.vma.geometry)
    if info is not None and not info.window_manager and not fullscreen:
        print(f"No window manager on {display}: the desktop fills the screen", flush=True)
        fullscreen = True
        geometry = info.geometry
    return {
        "qvd.client.os": "linux",
        "qvd.client.geometry": geometry,
        "qvd.client.link": opts.link,
        "qvd.client.keyboard": opts.keyboard,
        "qvd.client.fullscreen": "1" if fullscreen else "0",
    }


def connect(opts: Options, vm_id: int, tls: ssl.SSLSocket, proto: ClientProtocol) -> int:
    from qvd.client import devices as devs

    devices = devs.client_devices(opts.conf)
    params = session_params(opts, os.environ.get("DISPLAY"))
    for device in devices:
        params.update(device.params())
    switched = exchange(tls, proto, proto.connect_request(vm_id, params), _show)
    from qvd.client.nx import LocalProxy, relay  # needed only once the tunnel is up

    assert isinstance(switched, Switched)
    slave = opts.conf.flag("client.slave.enable") is not False and bool(switched.slave_key)
    session = devs.ClientSession(
        slave_key=switched.slave_key,
        env=dict(os.environ),
        slave_port=devs.free_port() if slave else None,
    )
    try:
        options: list[str] = []
        for device in devices:
            options += device.open(session)
        print("Connected; starting nxproxy", flush=True)
        channels = devs.nxproxy_options(session, options)
        with LocalProxy(session.env, channels) as proxy, proxy.accept() as local:
            for device in devices:
                threading.Thread(target=device.attached, args=(session,), daemon=True).start()
            relay(tls, local, switched.trailing)
    finally:
        for device in devices:
            device.close()
    print("Session ended", flush=True)
    return 0


def _pick(tls: ssl.SSLSocket, proto: ClientProtocol) -> int | None:
    listed = exchange(tls, proto, proto.list_request(), _show)
    assert isinstance(listed, VmList)
    return choose(listed.vms, input, print)


def _stop(tls: ssl.SSLSocket, proto: ClientProtocol, vm_id: int) -> None:
    done = exchange(tls, proto, proto.stop_request(vm_id), _show)
    assert isinstance(done, Done)
    print(f"Desktop {vm_id}: {done.text}", flush=True)


def run(args: argparse.Namespace, opts: Options) -> int:
    proto = ClientProtocol(f"{opts.host}:{opts.port}", _authorization(opts))
    with _tls(opts) as tls:
        if args.list:
            listed = exchange(tls, proto, proto.list_request(), _show)
            assert isinstance(listed, VmList)
            _print_table(listed.vms)
            return 0
        chosen = args.vm if args.vm is not None else (args.stop or args.restart or None)
        if chosen is None:
            chosen = _pick(tls, proto)
            if chosen is None:
                print("No desktop chosen", flush=True)
                return 1
        if args.stop is not None:
            _stop(tls, proto, chosen)
            return 0
        if args.restart is not None:
            _stop(tls, proto, chosen)
        return connect(opts, chosen, tls, proto)


@contextmanager
def _signals_end_the_client() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Terminated`` in the main thread (SIGINT raises
    KeyboardInterrupt), so every ``finally`` and ``with`` on the way out runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with _signals_end_the_client():
            conf = settings.load(args.config)
            opts = resolve(args, conf)
            try:
                code = run(args, opts)
            except ClientError as exc:
                print(f"qvd-client: {exc}", file=sys.stderr)
                return 2
            except (OSError, ssl.SSLError) as exc:
                print(f"qvd-client: cannot talk to {opts.host}:{opts.port}: {exc}", file=sys.stderr)
                return 3
            remembered = {"client.host.name": opts.host, "client.host.port": str(opts.port)}
            if opts.user:
                remembered["client.user.name"] = opts.user
            try:
                settings.remember(remembered, args.config)
            except OSError as exc:
                print(f"qvd-client: settings not remembered: {exc}", file=sys.stderr)
            return code
    except (settings.SettingsError, NoDesktop) as exc:
        print(f"qvd-client: {exc}", file=sys.stderr)
        return 2
    except Terminated as stop:
        print(f"qvd-client: ended by signal {stop.signum}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("qvd-client: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
