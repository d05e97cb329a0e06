"""``qvd-share-to-client <folder>``: open a desktop folder on the client machine.

Run by the desktop's user inside the session. It connects to nxagent's slave port
(127.0.0.1:11000+display, inside the VM): NX carries the connection to the client,
whose nxproxy runs the client's slave server (``qvd.client.slaveserver``) on it. The
request is ``GET /shares/<folder's name>`` with ``Upgrade: qvd:sftp/1.0`` and the
session's slave key (the file ``QVD_SLAVE_KEY_FILE``, the user's own, 0600: the VMA puts
its path in the X session's environment). On 101 the client mounts the folder with
sshfs (``~/QVD/<name>`` by default) and this program serves it with ``sftp-server`` on
the same connection until either side ends; otherwise it prints the client's reason.

The program stays in the foreground while the folder is open (end it, or let the
session end, to close the share). Exit status: 0 after a share, 1 when refused, 2 on a
usage error. Standard library only.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from qvd.vma.channels import slave_port
from qvd.vma.slaveproto import (
    SFTP_PROTOCOL,
    SlaveRefusal,
    parse_response_head,
    request_head,
    share_name,
)

__all__ = ["SFTP_SERVERS", "display_number", "main"]

SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server")
CONNECT_TIMEOUT = 20.0
_DISPLAY = re.compile(r":(\d{1,4})(?:\.\d+)?$")
_USAGE = "usage: qvd-share-to-client <folder>"


class ShareError(Exception):
    """Why the folder was not shared (exit status ``status``)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def display_number(display: str | None) -> int:
    """The X display number of ``DISPLAY`` (``:100``, ``:100.0``, ``nx/nx,…:100``)."""
    found = _DISPLAY.search(display or "")
    if found is None:
        raise ShareError(f"DISPLAY {display!r} names no local X display: run me in the session")
    return int(found.group(1))


def _read_key() -> str:
    path = os.environ.get("QVD_SLAVE_KEY_FILE")
    if not path:
        raise ShareError("QVD_SLAVE_KEY_FILE is not set: run me in a QVD session")
    try:
        with open(path, encoding="ascii") as fh:
            key = fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ShareError(f"cannot read the session's slave key: {exc}") from None
    if not key:
        raise ShareError("this session has no slave key (the slave channel is off)")
    return key


def _folder(arg: str) -> tuple[Path, str]:
    folder = Path(os.path.abspath(os.path.expanduser(arg)))
    if not folder.is_dir():
        raise ShareError(f"{arg}: not a directory", 2)
    encoded = urllib.parse.quote(folder.name, safe="")
    try:
        share_name(encoded)  # the client's own rules, checked here for a clear message
    except SlaveRefusal as refusal:
        raise ShareError(f"{arg}: {refusal.reason}", 2) from None
    return folder, encoded


def _sftp_server() -> str:
    for path in SFTP_SERVERS:
        if os.access(path, os.X_OK):
            return path
    raise ShareError("no sftp-server in this desktop (the openssh-sftp-server package)")


def _answer(sock: socket.socket) -> tuple[int, str]:
    data = b""
    while not data.endswith((b"\r\n\r\n", b"\n\n")):
        chunk = sock.recv(1)  # byte by byte: what follows a 101 is SFTP
        if not chunk:
            raise ShareError(
                "the client closed the connection without an answer (a client that "
                "does not open desktop folders, or no client attached)"
            )
        data += chunk
        if len(data) > 16 * 1024:
            raise ShareError("the client's answer is too long")
    try:
        status, length = parse_response_head(data)
    except ValueError as exc:
        raise ShareError(str(exc)) from None
    body = b""
    while status != 101 and len(body) < length and (chunk := sock.recv(length - len(body))):
        body += chunk
    reason = body.decode("utf-8", "replace").strip()
    return status, "".join(c if c.isprintable() else "?" for c in reason)  # a terminal's


def share(arg: str) -> int:
    folder, encoded = _folder(arg)
    server = _sftp_server()
    key = _read_key()
    port = slave_port(display_number(os.environ.get("DISPLAY")))
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise ShareError(f"no slave channel on 127.0.0.1:{port}: {exc.strerror}") from None
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request_head("GET", f"/shares/{encoded}", key, SFTP_PROTOCOL))
        status, reason = _answer(sock)
        if status != 101:
            raise ShareError(f"the client refused ({status}): {reason}")
        sock.settimeout(None)
        print(f"qvd-share-to-client: {folder} is open on the client; end me to close it",
              file=sys.stderr, flush=True)  # fmt: skip
        sftp = subprocess.Popen([server, "-d", str(folder)], stdin=sock.fileno(),
                                stdout=sock.fileno())  # fmt: skip
        try:
            status = sftp.wait()
        finally:  # ended by a signal: the sftp-server goes too, and the channel closes
            if sftp.poll() is None:
                sftp.terminate()
                sftp.wait(10)
    print(f"qvd-share-to-client: {folder} closed (sftp-server exit status {status})",
          file=sys.stderr, flush=True)  # fmt: skip
    return 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)  # closes the folder (see share)
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] in ("-h", "--help") or not args[0]:
        print(_USAGE, file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    try:
        return share(args[0])
    except ShareError as exc:
        print(f"qvd-share-to-client: {exc}", file=sys.stderr, flush=True)
        return exc.status


if __name__ == "__main__":
    raise SystemExit(main())
