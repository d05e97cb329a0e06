"""``qvd-client``: the command line, the TLS connection, nxproxy and the relay.

qvd-client --host H --user U [--password-file F] --list
qvd-client --host H --user U --vm ID [--geometry WxH] [--keyboard K] [--link L]
           [--fullscreen] [--insecure | --ca FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from qvd.client import settings
from qvd.client.protocol import ClientError, ClientProtocol, Progress, Switched, VmList, basic_auth

__all__ = ["exchange", "main", "parse_args"]

_NX_DISPLAY = 40


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    remembered = settings.load()
    p = argparse.ArgumentParser(prog="qvd-client", description="Connect to a QVD desktop.")
    p.add_argument("--host", default=remembered.get("host"))
    p.add_argument("--port", type=int, default=int(remembered.get("port", "8443")))
    p.add_argument("--user", default=remembered.get("user"))
    p.add_argument("--password-file", type=Path, help="read the password from this file")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list your virtual machines")
    what.add_argument("--vm", type=int, help="connect to this VM id")
    p.add_argument("--geometry", default="1024x768")
    p.add_argument("--keyboard", default="pc105/us")
    p.add_argument("--link", default="adsl")
    p.add_argument("--fullscreen", action="store_true")
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--insecure", action="store_true", help="accept any certificate")
    trust.add_argument("--ca", type=Path, help="CA file that signed the server certificate")
    args = p.parse_args(argv)
    if not args.host or not args.user:
        p.error("--host and --user are needed (they are remembered after the first use)")
    return args


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        return str(args.password_file.read_text(encoding="utf-8").strip())
    return getpass.getpass(f"Password for {args.user}@{args.host}: ")


def _tls(args: argparse.Namespace) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(args.ca) if args.ca else None)
    ctx.set_alpn_protocols(["http/1.1"])
    if args.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((args.host, args.port), timeout=30)
    tls = ctx.wrap_socket(raw, server_hostname=args.host)
    tls.settimeout(600)  # a connect may wait that long for its VM
    return tls


def exchange(
    sock: ssl.SSLSocket,
    proto: ClientProtocol,
    request: bytes,
    on_progress: Callable[[str], None] = lambda info: None,
) -> VmList | Switched:
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
    for vm in vms:
        print(f"{vm['id']!s:>6}  {vm['name']!s:<24} {vm['state']!s:<10} {vm['blocked']}")


def relay(tls: ssl.SSLSocket, local: socket.socket, first: bytes = b"") -> None:
    """Copy bytes between the upgraded TLS socket and nxproxy until one side ends."""
    tls.settimeout(None)
    local.settimeout(None)
    if first:
        local.sendall(first)
    sel = selectors.DefaultSelector()
    sel.register(tls, selectors.EVENT_READ, local)
    sel.register(local, selectors.EVENT_READ, tls)
    try:
        while True:
            for key, _ in sel.select():
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = src.recv(262144)
                except ssl.SSLWantReadError:
                    continue
                if not data:
                    return
                key.data.sendall(data)
                if src is tls:  # drain what TLS already decrypted
                    while tls.pending():
                        key.data.sendall(tls.recv(tls.pending()))
    finally:
        sel.close()


def run_nxproxy(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    root = Path(env.setdefault("NX_ROOT", tempfile.mkdtemp(prefix="qvd-client-nx-")))
    root.mkdir(parents=True, exist_ok=True)
    options = f"nx/nx,connect=127.0.0.1,port={port}:{_NX_DISPLAY}"
    log = open(root / "nxproxy.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        ["nxproxy", "-S", options], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        env=env, cwd=root, start_new_session=True,
    )  # fmt: skip


def connect(args: argparse.Namespace, tls: ssl.SSLSocket, proto: ClientProtocol) -> int:
    params = {
        "qvd.client.os": "linux",
        "qvd.client.geometry": args.geometry,
        "qvd.client.link": args.link,
        "qvd.client.keyboard": args.keyboard,
        "qvd.client.fullscreen": "1" if args.fullscreen else "0",
    }
    switched = exchange(tls, proto, proto.connect_request(args.vm, params), _show)
    assert isinstance(switched, Switched)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    print("Connected; starting nxproxy", flush=True)
    proxy = run_nxproxy(int(listener.getsockname()[1]), dict(os.environ))
    try:
        listener.settimeout(30)
        with listener:
            local, _ = listener.accept()
        with local:
            relay(tls, local, switched.trailing)
    finally:
        if proxy.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proxy.pid, 15)
            proxy.wait(10)
    print("Session ended", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        password = _password(args)
        with _tls(args) as tls:
            proto = ClientProtocol(f"{args.host}:{args.port}", basic_auth(args.user, password))
            if args.list:
                result = exchange(tls, proto, proto.list_request(), _show)
                assert isinstance(result, VmList)
                _print_table(result.vms)
                code = 0
            else:
                code = connect(args, tls, proto)
        settings.save({"host": args.host, "port": str(args.port), "user": args.user})
        return code
    except ClientError as exc:
        print(f"qvd-client: {exc}", file=sys.stderr)
        return 2
    except (OSError, ssl.SSLError) as exc:
        print(f"qvd-client: cannot talk to {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
