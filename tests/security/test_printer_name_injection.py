"""Attack: a hostile client names its printers so that the desktop's printing hook runs a
command, edits or deletes a queue it does not own, or writes outside CUPS's names —
shell and lpadmin metacharacters, an option-looking name, ``../``, spaces, newlines, a
NUL, names too long, the name of a queue the desktop already has.

The client's "CUPS" here is the attacker's own IPP server (it answers anything it likes,
which a real cupsd would not), on the port where nxagent's printing channel would be
(2000 + display); the desktop's side is real: a cupsd, lpadmin, the VMA's device. The
desktop must get only queues named ``[A-Za-z0-9_.-]``, keep its own queue as it was,
and nothing must run."""

from __future__ import annotations

import http.server
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.printing import Printing
from tests.cupsd import PrivateCupsd
from tests.vma.helpers import printing_context

SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def hostile_names(canary: Path) -> list[bytes]:
    return [
        f"; touch {canary}".encode(),
        f"$(touch {canary})".encode(),
        f"`touch {canary}`".encode(),
        f"|touch {canary}".encode(),
        b"-x local",  # an lpadmin option: delete the desktop's queue
        b"-xlocal",
        b"local",  # the desktop's own queue: redirect it to the client
        b"../../../etc/cups/cupsd",
        b"a b\tc",
        b"x\nDefaultPrinter evil\n<Printer evil>",
        b"nul\x00byte",
        b"L" * 127,
        b"M" * 5000,
        "ünïcødé".encode(),
    ]


def attr(tag: int, name: bytes, value: bytes) -> bytes:
    return struct.pack(">BH", tag, len(name)) + name + struct.pack(">H", len(value)) + value


def ipp_answer(request_id: int, printers: list[bytes]) -> bytes:
    body = struct.pack(">BBHI", 2, 0, 0, request_id) + b"\x01"
    body += attr(0x47, b"attributes-charset", b"utf-8")
    body += attr(0x48, b"attributes-natural-language", b"en")
    for name in printers:
        body += b"\x04" + attr(0x42, b"printer-name", name[:0xFFFF])
    return body + b"\x03"


class HostileCups:
    """An IPP server that lists ``names`` and calls the option-looking one the default."""

    def __init__(self, names: list[bytes]) -> None:
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                operation, request_id = struct.unpack_from(">HI", body, 2)
                served.requests.append(operation)
                printers = names if operation == 0x4002 else [b"-x local"]
                data = ipp_answer(request_id, printers)
                self.send_response(200)
                self.send_header("Content-Type", "application/ipp")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.requests: list[int] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def desktop_cupsd() -> Iterator[PrivateCupsd]:
    with PrivateCupsd() as cupsd:
        yield cupsd


def device_uri(cupsd: PrivateCupsd, queue: str) -> str:
    done = subprocess.run(["lpstat", "-h", cupsd.server, "-v", queue], capture_output=True,
                          text=True, check=False, env={"LC_ALL": "C"})  # fmt: skip
    return done.stdout.strip()


def test_hostile_printer_names_give_safe_queues_and_run_nothing(
    desktop_cupsd: PrivateCupsd, tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    own = desktop_cupsd.add_file_queue("local", default=True)
    own_uri = device_uri(desktop_cupsd, "local")
    hostile = HostileCups(hostile_names(canary))
    try:
        ctx = printing_context(desktop_cupsd.server, hostile.port - 2000, tmp_path)
        device = Printing()
        device.connected(ctx)
        assert 0x4002 in hostile.requests  # the attacker was asked

        queues = desktop_cupsd.queues()
        added = [name for name in queues if name != "local"]
        assert added, "the printable hostile names still get (safe) queues"
        for name in queues:
            assert set(name) <= SAFE, name
            assert len(name) <= 64
            assert not name.startswith(("-", "."))
        # the desktop's own queue is where it was; the option-looking names are queue
        # names (the client's default among them), not options; nothing ran
        assert {"local", "local_2", "_x_local", "_xlocal"} <= set(queues)
        assert device_uri(desktop_cupsd, "local") == own_uri
        assert own_uri.endswith(str(own))
        assert not canary.exists()
        # control characters, NUL and over-long names get no queue at all
        assert not any("DefaultPrinter" in name or "nul" in name for name in queues)
        assert not any(name.startswith("MMMM") for name in queues)

        device.stopped(ctx)
        assert desktop_cupsd.queues() == ["local"]
        assert device_uri(desktop_cupsd, "local") == own_uri
    finally:
        hostile.close()
