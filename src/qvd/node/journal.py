"""Logging to the systemd journal as structured entries (its native protocol).

When a daemon runs under systemd, its stderr is a stream to journald and
``$JOURNAL_STREAM`` names it (``device:inode``). Then, or when asked with
``--log journal``, each log record goes as one datagram to journald's socket
(``/run/systemd/journal/socket``) carrying ``MESSAGE``, ``PRIORITY`` (syslog levels),
``SYSLOG_IDENTIFIER``, where it was logged (``CODE_FILE``/``CODE_LINE``/``CODE_FUNC``),
the logger (``QVD_LOGGER``), this node (``QVD_HOST``) and the ids a record carries in
``extra`` (``vm_id`` → ``QVD_VM_ID``, …), so ``journalctl QVD_VM_ID=12`` finds a
desktop's lines. Otherwise logs stay plain lines, as before.

The wire format: ``KEY=value\\n`` per field, or, for a value with a line break,
``KEY\\n`` + its length as 64-bit little endian + the value + ``\\n``.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "JOURNAL_SOCKET",
    "JournalHandler",
    "encode_entry",
    "priority_of",
    "stderr_is_journal",
    "use_journal",
]

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
# the ids a record may carry in `extra` (log.info(..., extra={"vm_id": 12})) and their field
RECORD_FIELDS: Mapping[str, str] = {
    "vm_id": "QVD_VM_ID",
    "host_id": "QVD_HOST_ID",
    "tenant_id": "QVD_TENANT_ID",
    "user_id": "QVD_USER_ID",
    "osf_id": "QVD_OSF_ID",
    "di_id": "QVD_DI_ID",
    "login": "QVD_LOGIN",
}
# journald refuses a datagram beyond its socket's limits; a longer message is cut
MAX_MESSAGE = 48 * 1024


def priority_of(levelno: int) -> int:
    """The syslog priority of a logging level (CRITICAL 2 … DEBUG 7)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def _field_name_ok(name: str) -> bool:
    return (
        0 < len(name) <= 64
        and name[0] != "_"
        and not name[0].isdigit()
        and all(c.isascii() and (c.isupper() or c.isdigit() or c == "_") for c in name)
    )


def encode_entry(fields: Mapping[str, str]) -> bytes:
    """One journal entry in the native protocol. A field name must be upper-case
    ASCII letters, digits and ``_`` (not leading ``_``: those are journald's own)."""
    out = bytearray()
    for name, value in fields.items():
        if not _field_name_ok(name):
            raise ValueError(f"not a journal field name: {name!r}")
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """Whether ``fd`` is the stream ``$JOURNAL_STREAM`` names (systemd connected it)."""
    env = os.environ if environ is None else environ
    device, sep, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)


class JournalHandler(logging.Handler):
    """Sends each record to journald as one structured entry."""

    def __init__(
        self,
        identifier: str,
        *,
        host: str | None = None,
        socket_path: Path = JOURNAL_SOCKET,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self.identifier = identifier
        self.host = host
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def fields_of(self, record: logging.LogRecord) -> dict[str, str]:
        message = self.format(record)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "…"
        fields = {
            "MESSAGE": message,
            "PRIORITY": str(priority_of(record.levelno)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "SYSLOG_PID": str(os.getpid()),
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
            "QVD_LOGGER": record.name,
            "QVD_THREAD": record.threadName or "",
        }
        if self.host:
            fields["QVD_HOST"] = self.host
        for attribute, field in RECORD_FIELDS.items():
            value = getattr(record, attribute, None)
            if value is not None:
                fields[field] = str(value)
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sock.sendto(encode_entry(self.fields_of(record)), str(self.socket_path))
        except Exception:  # logging must never break the daemon
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()


def use_journal(
    identifier: str,
    level: str,
    *,
    host: str | None = None,
    socket_path: Path = JOURNAL_SOCKET,
) -> JournalHandler:
    """Make the root logger send to the journal (replacing its handlers)."""
    handler = JournalHandler(identifier, host=host, socket_path=socket_path)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uncaught errors end up in the journal too, via stderr (the journal stream)
    sys.stderr.flush()
    return handler
