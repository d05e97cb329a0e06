"""``qvd-client`` with the emulated USB device (``tests/usbipdev.py``) as its USB
exporter: ``python -m tests.usbipclient <qvd-client argv>``. The test suite's entry
only: the product client has no setting that selects an emulated device."""

from __future__ import annotations

import sys

from qvd.client import usb
from qvd.client.main import main
from tests.usbipdev import EmulatedExporter

if __name__ == "__main__":
    usb.use_exporter(EmulatedExporter)
    raise SystemExit(main(sys.argv[1:]))
