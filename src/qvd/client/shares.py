"""Shared folders: the client's local folders mounted in the desktop on
``~/Redirected/<name>`` (the original's ``client.file_sharing.enable`` and shares).

Settings: ``client.file_sharing.enable`` (default 1) and one ``client.share.<N>`` per
folder, ``<folder>[;ro]`` (``~`` is the user's home; ``;ro`` shares it read-only, ``;rw``
is the default). The share's name is the folder's last component.

Once nxproxy relays, each share opens a slave connection (``qvd.client.slave``):
``PUT /shares/<name>`` with ``Upgrade: qvd:sftp/1.0``; on 101 the desktop runs sshfs
over the stream and this side runs ``sftp-server`` (``-R`` when read-only) with the
socket as its stdin and stdout. ``close`` ends them.

The desktop is hostile: ``sftp-server -d`` only sets the starting directory, and a
desktop that speaks SFTP itself could walk to every other file of the client's user
(the original's behaviour). So the server runs confined by bubblewrap: in its own
namespaces (no network), with only ``/usr``, the user and group names, ``/dev``'s basic
nodes and the shared folder (read-only when shared so) at ``/share``; a link in the
folder that points outside leads nowhere. Without ``bwrap`` nothing is shared (and the
client says why).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from qvd.client import settings
from qvd.client.devices import ClientSession
from qvd.client.slave import SlaveRefused, request_bytes, upgrade

__all__ = [
    "SFTP_SERVER",
    "Share",
    "SharesDevice",
    "parse_share",
    "server_argv",
    "share_request",
    "shares_of",
]

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
SHARE_ROOT = "/share"  # where the folder is, inside the confined server
PREFIX = "client.share."


@dataclass(frozen=True, slots=True)
class Share:
    folder: Path
    read_only: bool = False

    @property
    def name(self) -> str:
        return self.folder.name


def _name_ok(name: str) -> bool:
    return (
        1 <= len(name) <= 64
        and name not in (".", "..")
        and not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name)
    )


def parse_share(value: str) -> Share:
    """``<folder>[;ro|;rw]`` → a Share; SettingsError when it cannot be one."""
    text = value.strip()
    folder, semicolon, mode = text.rpartition(";") if ";" in text else (text, "", "")
    mode = mode.strip().lower()
    if semicolon and mode not in ("ro", "rw"):
        raise settings.SettingsError(f"share {value[:80]!r}: the mode after ';' is ro or rw")
    folder = folder.strip()
    if not folder or "\x00" in folder:
        raise settings.SettingsError(f"share {value[:80]!r}: no folder")
    path = Path(os.path.expanduser(folder))
    if not path.is_absolute():
        raise settings.SettingsError(f"share {value[:80]!r}: the folder must be absolute")
    share = Share(folder=Path(os.path.normpath(path)), read_only=mode == "ro")
    if not _name_ok(share.name):
        raise settings.SettingsError(
            f"share {value[:80]!r}: its name {share.name[:80]!r} must be 1-64 characters, "
            "no control characters"
        )
    return share


def shares_of(conf: settings.ClientSettings) -> list[Share]:
    """The configured shares, in the order of their keys (``client.share.1``, …)."""
    keys = sorted(
        # client.share.from_desktop.* are the reverse direction's (qvd.client.slaveserver)
        (k for k in conf.values if k.startswith(PREFIX) and k not in settings.KNOWN_KEYS),
        key=lambda k: (len(k), k),
    )
    return [parse_share(conf.values[key]) for key in keys]


def share_request(share: Share, key: str) -> bytes:
    path = "/shares/" + urllib.parse.quote(share.name, safe="")
    return request_bytes("PUT", path, key, "qvd:sftp/1.0")


def server_argv(share: Share, bwrap: str | None) -> list[str] | None:
    """The confined ``sftp-server`` of ``share`` (None without bubblewrap)."""
    if bwrap is None:
        return None
    bind = "--ro-bind" if share.read_only else "--bind"
    return [
        # no --die-with-parent: it follows the thread that started the server, which ends
        # right after (``close`` and the channel's end stop the server)
        bwrap, "--unshare-all", "--new-session",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--ro-bind", "/etc/passwd", "/etc/passwd", "--ro-bind", "/etc/group", "/etc/group",
        "--dev", "/dev",
        bind, str(share.folder), SHARE_ROOT, "--chdir", SHARE_ROOT,
        SFTP_SERVER, "-d", SHARE_ROOT, *(["-R"] if share.read_only else []),
    ]  # fmt: skip


class SharesDevice:
    name = "shares"

    def __init__(self, shares: list[Share]) -> None:
        self.shares = shares
        self._servers: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._closed = False

    def params(self) -> dict[str, str]:
        return {}

    def open(self, session: ClientSession) -> list[str]:
        if session.slave_port is None and self.shares:
            print("shared folders: no slave channel (client.slave.enable=0 or no slave key)",
                  file=sys.stderr, flush=True)  # fmt: skip
        return []

    def attached(self, session: ClientSession) -> None:
        if session.slave_port is None:
            return
        bwrap = shutil.which("bwrap")
        if bwrap is None and self.shares:
            print("shared folders need bubblewrap (bwrap), which keeps the desktop inside "
                  "the shared folder: nothing shared", file=sys.stderr, flush=True)  # fmt: skip
            return
        for share in self.shares:
            if not share.folder.is_dir():
                print(f"shared folder {share.folder}: not a directory, not shared",
                      file=sys.stderr, flush=True)  # fmt: skip
                continue
            try:
                sock = upgrade(session.slave_port, share_request(share, session.slave_key))
            except SlaveRefused as refused:
                print(f"shared folder {share.name!r} refused by the desktop "
                      f"({refused.status}): {refused}", file=sys.stderr, flush=True)  # fmt: skip
                continue
            except ConnectionError as exc:
                print(f"shared folder {share.name!r}: {exc}", file=sys.stderr, flush=True)
                continue
            argv = server_argv(share, bwrap)
            assert argv is not None
            with self._lock, sock:
                if self._closed:
                    return
                self._servers.append(
                    subprocess.Popen(argv, stdin=sock.fileno(), stdout=sock.fileno(),
                                     stderr=subprocess.DEVNULL, close_fds=True)
                )  # fmt: skip
            print(f"shared folder {share.folder} → ~/Redirected/{share.name}"
                  f"{' (read-only)' if share.read_only else ''}", flush=True)  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._closed = True
            servers, self._servers = self._servers, []
        for server in servers:
            if server.poll() is None:
                server.terminate()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
