"""USB devices over USB/IP through the slave channel (the original's
``client.usb.enable`` and ``client.usb.implementation``).

With ``client.usb.enable`` the client sends ``qvd.client.usb.enabled=1`` and
``qvd.client.usb.implementation=USBIP`` (as the original clients) and, once nxproxy
relays, asks the desktop for ``POST /usbip`` with ``Upgrade: qvd:usbip/1.0``. A desktop
without the vhci-hcd module refuses with the reason, which is printed; the session goes
on. Exporting devices over an accepted stream is not implemented: the stream is closed.
"""

from __future__ import annotations

import sys

from qvd.client.devices import ClientSession
from qvd.client.slave import SlaveRefused, request_bytes, upgrade

__all__ = ["UsbDevice", "usb_request"]


def usb_request(key: str) -> bytes:
    return request_bytes("POST", "/usbip", key, "qvd:usbip/1.0")


class UsbDevice:
    name = "usb"

    def __init__(self, implementation: str = "USBIP") -> None:
        self.implementation = implementation

    def params(self) -> dict[str, str]:
        return {"qvd.client.usb.enabled": "1", "qvd.client.usb.implementation": "USBIP"}

    def open(self, session: ClientSession) -> list[str]:
        return []

    def attached(self, session: ClientSession) -> None:
        if session.slave_port is None:
            print("USB: no slave channel", file=sys.stderr, flush=True)
            return
        try:
            sock = upgrade(session.slave_port, usb_request(session.slave_key))
        except SlaveRefused as refused:
            print(f"USB refused by the desktop ({refused.status}): {refused}",
                  file=sys.stderr, flush=True)  # fmt: skip
            return
        except ConnectionError as exc:
            print(f"USB: {exc}", file=sys.stderr, flush=True)
            return
        sock.close()
        print("USB: the desktop accepted USB/IP, but exporting devices is not implemented",
              file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        pass
