"""The client's USB side (``qvd.client.usb``): the chosen devices, the request, the
exporter's half of the import handshake, the usbip-host exporter's clear refusals, and
a whole share through the real slave program and the VMA's attach service with a fake
vhci-hcd directory (the desktop side as in tests/vma/test_usb_service.py)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from qvd.client import settings
from qvd.client.devices import client_devices
from qvd.client.settings import ClientSettings, SettingsError
from qvd.client.usb import (
    UsbipHostExporter,
    UsbUnavailable,
    check_selection,
    export_over,
    selections,
    usb_request,
)
from qvd.vma.slaveproto import UsbRequest, decide, parse_head
from qvd.vma.usb import import_over
from qvd.vma.usbip import UsbipError, import_request
from tests.usbipdev import BUSID, PRODUCT_ID, VENDOR_ID, EmulatedExporter, get_descriptor

KEY = "Qw3" * 21 + "z"


def test_selections_in_order_and_checked() -> None:
    conf = ClientSettings({"client.usb.share.2": "046D:C52B", "client.usb.share.1": "1-2",
                           "client.usb.share.10": "3-1.4", "client.share.1": "/srv"})  # fmt: skip
    assert selections(conf) == ["1-2", "046d:c52b", "3-1.4"]
    for bad in ("1-2; rm -rf /", "../1-1", "046d:c52", "usb1", "1-1 2"):
        with pytest.raises(SettingsError, match="neither a USB bus id"):
            check_selection(bad)
    assert settings.check("client.usb.share.1", " 1-2 ") == "1-2"
    with pytest.raises(SettingsError):
        settings.check("client.usb.share.1", "/dev/bus/usb/001/002")


def test_the_usb_device_is_on_with_client_usb_enable() -> None:
    conf = ClientSettings({"client.usb.enable": "1", "client.printing.enable": "0",
                           "client.slave.enable": "0"})  # fmt: skip
    assert [d.name for d in client_devices(conf)] == ["usb"]


def test_the_request_names_the_device() -> None:
    raw = usb_request(KEY, "3-1.4")
    assert b"X-QVD-USB-Busid: 3-1.4\r\n" in raw
    assert decide(parse_head(raw), KEY) == UsbRequest("3-1.4")
    with pytest.raises(UsbipError):
        usb_request(KEY, "1-1\r\nX-Evil: 1")


def test_both_halves_of_the_handshake() -> None:
    """The desktop's importer (qvd.vma.usb.import_over) against the client's exporter."""
    exporter = EmulatedExporter()
    ours, theirs = socket.socketpair()
    with theirs:
        exporting = threading.Thread(target=export_over, args=(ours, BUSID, exporter))
        exporting.start()
        device = import_over(theirs, BUSID, timeout=10)
        exporting.join(10)
    exporter.close()
    assert (device.id_vendor, device.id_product, device.busid) == (VENDOR_ID, PRODUCT_ID, BUSID)


def test_the_exporter_refuses_another_busid_than_it_shares() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(import_request("9-9"))
        with pytest.raises(UsbipError, match="asked for '9-9'"):
            export_over(ours, BUSID, EmulatedExporter())
        assert theirs.recv(8) == b"\x01\x11\x00\x03\x00\x00\x00\x01"  # refused


def test_usbip_host_missing_is_said_clearly(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    (devices / "1-2").mkdir(parents=True)
    for name, value in {"idVendor": "046d", "idProduct": "c52b"}.items():
        (devices / "1-2" / name).write_text(value + "\n")
    exporter = UsbipHostExporter(devices=devices, driver=tmp_path / "no-usbip-host")
    assert exporter.resolve("046d:c52b") == "1-2"
    assert exporter.resolve("1-2") == "1-2"
    with pytest.raises(UsbUnavailable, match="no USB device 1-3"):
        exporter.resolve("1-3")
    with pytest.raises(UsbUnavailable, match="usbip-host kernel module is not loaded"):
        exporter.describe("1-2")


NO_USBIP_HOST = (
    "no usbip-host module on this machine (no kernel modules at all: /lib/modules is "
    "empty), so the product's export path cannot run"
)


@pytest.mark.skipif(not Path("/sys/bus/usb/drivers/usbip-host").is_dir(), reason=NO_USBIP_HOST)
def test_usbip_host_describes_a_real_device() -> None:
    real = [p.name for p in Path("/sys/bus/usb/devices").iterdir()
            if (p / "idVendor").exists() and ":" not in p.name and "-" in p.name]  # fmt: skip
    if not real:
        pytest.skip("usbip-host is loaded but no USB device is plugged in")
    exporter = UsbipHostExporter()
    device = exporter.describe(exporter.resolve(real[0]))  # binds it to usbip-host (root)
    assert device.busid == real[0]
    assert f"{device.id_vendor:04x}" == (Path("/sys/bus/usb/devices") / real[0] /
                                         "idVendor").read_text().strip()  # fmt: skip


def test_a_device_through_the_real_slave_program_and_attach_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole path but the kernels: ``UsbDevice`` (the emulated device plugged in) →
    a loopback "nxproxy" → the real ``qvd-vma-slave`` with the socket on its stdin and
    stdout → the VMA's attach service → a vhci-hcd directory in a temporary folder. The
    socket vhci-hcd got carries the device's URBs; suspend detaches and ends the slave
    program."""
    from qvd.client.devices import ClientSession
    from qvd.client.usb import UsbDevice, use_exporter
    from qvd.vma.usb import UsbAttachService
    from tests.client.test_shares import SlaveListener
    from tests.vma.usbfakes import FakeVhci

    key_file = tmp_path / "slave-key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    (tmp_path / "home").mkdir()
    vhci = FakeVhci(tmp_path / "sys")
    service = UsbAttachService(tmp_path / "usbip.sock", 0, 0, vhci,
                               usb_devices=vhci.usb_devices, dev_usb=vhci.dev_usb)  # fmt: skip
    listener = SlaveListener(key_file, tmp_path / "home")
    exporters: list[EmulatedExporter] = []

    def exporter() -> EmulatedExporter:
        exporters.append(EmulatedExporter())
        return exporters[-1]

    use_exporter(exporter)
    device = UsbDevice(ClientSettings({"client.usb.share.1": f"{VENDOR_ID:04x}:{PRODUCT_ID:04x}"}))
    try:
        device.attached(ClientSession(slave_key=KEY, env={}, slave_port=listener.port))
        assert f"USB: {BUSID} ({VENDOR_ID:04x}:{PRODUCT_ID:04x}) shared with the desktop" in (
            capsys.readouterr().err
        )
        # the client says "shared" once its side of the import is sent; the attach service
        # writes vhci-hcd's attach file just after
        deadline = time.monotonic() + 10
        while not vhci.attached and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [(port, speed) for port, _dev, speed, _ino in vhci.attached] == [(0, 3)]
        held = vhci.held[0]  # what vhci-hcd reads: the client's device, through the slave
        configuration = get_descriptor(held, 5, 2, 9, devid=0)
        assert configuration[:2] == b"\x09\x02"  # a configuration descriptor
        slave = listener.procs[0]
        assert slave.poll() is None  # it waits while the device is attached
        service.detach_all()  # the session is suspended
        assert slave.wait(20) == 0
    finally:
        use_exporter(UsbipHostExporter)
        device.close()
        listener.close()
        service.close()
        vhci.close()
