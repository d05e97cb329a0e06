"""A hostile desktop answers the client's slave request with a refusal whose reason
holds terminal escape sequences (retitle the window, rewrite the screen): the client
prints refusal reasons to the user's terminal, so they must arrive there without any
control character. The desktop here is a loopback listener that answers as one would;
the client side is the real ``qvd.client.usb`` device and ``qvd.client.slave``."""

from __future__ import annotations

import socket
import threading

import pytest

from qvd.client.devices import ClientSession
from qvd.client.settings import ClientSettings
from qvd.client.usb import UsbDevice, UsbipHostExporter, use_exporter
from tests.usbipdev import EmulatedExporter

ESCAPES = b"\x1b]0;pwned\x07\x1b[2J\x1b[1;1H\r\nfake prompt$ \x9b31m"


def test_a_refusal_reason_reaches_the_terminal_without_escapes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = b"refused " + ESCAPES
    asked: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as desktop:

        def answer() -> None:
            conn, _ = desktop.accept()
            with conn:
                asked.append(conn.recv(4096))
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))  # fmt: skip

        peer = threading.Thread(target=answer, daemon=True)
        peer.start()
        session = ClientSession(slave_key="k" * 32, env={}, slave_port=desktop.getsockname()[1])
        use_exporter(lambda: EmulatedExporter("1-1"))  # the device exists on the client
        try:
            UsbDevice(ClientSettings({"client.usb.share.1": "1-1"})).attached(session)
        finally:
            use_exporter(UsbipHostExporter)
        peer.join(10)

    assert len(asked) == 1, asked
    assert asked[0].startswith(b"POST /usbip "), asked
    printed = capsys.readouterr().err
    assert "USB refused by the desktop (503): refused " in printed, printed
    assert "pwned" in printed  # the reason is shown, its escapes are not
    assert not any((ord(c) < 32 and c != "\n") or 127 <= ord(c) < 160 for c in printed), printed
