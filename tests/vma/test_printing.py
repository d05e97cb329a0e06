"""The printing device of the VMA: queue names from hostile client names, the lpadmin
argv, the IPP messages (pure); then the device against two real cupsds on this machine,
the desktop's and the client's (the client's listening where nxagent's printing channel
would: 2000 + display), printing through the queue it adds."""

from __future__ import annotations

import pwd
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.channels import ChannelPlan, printing_port
from qvd.vma.config import DEFAULTS
from qvd.vma.devices import DeviceContext
from qvd.vma.ipp import (
    CUPS_GET_PRINTERS,
    IppError,
    decode_response,
    encode_request,
)
from qvd.vma.printing import (
    MAX_PRINTERS,
    ClientPrinters,
    Printing,
    Queue,
    add_queue_argv,
    client_printers,
    plan_queues,
    queue_name,
    remove_queue_argv,
)
from tests.cupsd import PrivateCupsd
from tests.vma.helpers import printing_context

SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


# ---- queue names -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("client_name", "expected"),
    [
        ("HP_LaserJet", "HP_LaserJet"),
        ("office-2.floor", "office-2.floor"),
        ("a b", "a_b"),
        ("x;rm -rf /", "x_rm_-rf__"),
        ("$(touch /tmp/p)", "__touch__tmp_p_"),
        ("../../etc/passwd", "___.._etc_passwd"),
        ("-E", "_E"),
        ("..", "printer"),
        ("///", "printer"),
        ("Драйвер", "printer"),
        ("é-printer", "_-printer"),
    ],
)
def test_queue_names_are_made_of_safe_characters(client_name: str, expected: str) -> None:
    assert queue_name(client_name, []) == expected


def test_a_long_name_is_cut_and_names_never_clash_without_case() -> None:
    long = "P" * 300
    assert queue_name(long, []) == "P" * 64
    assert queue_name("office", ["OFFICE"]) == "office_2"
    assert queue_name("office", ["office", "office_2"]) == "office_3"
    cut = queue_name(long, ["P" * 64])
    assert cut == "P" * 62 + "_2"
    assert len(cut) == 64


def test_plan_queues_uris_defaults_and_limits() -> None:
    client = ClientPrinters(names=("Laser", "a b", "Laser", "x\ny", "", "Z" * 200), default="a b")
    queues = plan_queues(client, existing=["laser"], port=2100)
    assert queues == [
        Queue("Laser_2", "ipp://localhost:2100/printers/Laser"),
        Queue("a_b", "ipp://localhost:2100/printers/a%20b", default=True),
    ]  # the duplicate, the control character, the empty and the too long name: no queue
    many = ClientPrinters(names=tuple(f"p{n}" for n in range(100)))
    assert len(plan_queues(many, [], 2100)) == MAX_PRINTERS
    hostile = plan_queues(ClientPrinters(names=("../admin?x#y",)), [], 2100)[0]
    assert hostile.uri == "ipp://localhost:2100/printers/..%2Fadmin%3Fx%23y"
    assert set(hostile.name) <= SAFE


def test_lpadmin_argv() -> None:
    queue = Queue("Laser", "ipp://localhost:2100/printers/Laser")
    assert add_queue_argv("/usr/sbin/lpadmin", "/run/cups/cups.sock", queue) == [
        "/usr/sbin/lpadmin", "-h", "/run/cups/cups.sock", "-p", "Laser",
        "-v", "ipp://localhost:2100/printers/Laser", "-o", "printer-is-shared=false", "-E",
    ]  # fmt: skip
    assert remove_queue_argv("lpadmin", "s", "Laser") == ["lpadmin", "-h", "s", "-x", "Laser"]


# ---- IPP -----------------------------------------------------------------------------------
def attr(tag: int, name: str, value: bytes) -> bytes:
    return (
        struct.pack(">BH", tag, len(name)) + name.encode() + struct.pack(">H", len(value)) + value
    )


def test_request_encoding() -> None:
    data = encode_request(CUPS_GET_PRINTERS, 7, ["printer-name", "printer-type"])
    assert data[:8] == bytes([2, 0, 0x40, 0x02, 0, 0, 0, 7])
    assert data[8] == 0x01
    assert data[-1] == 0x03
    assert attr(0x47, "attributes-charset", b"utf-8") in data
    assert (
        attr(0x44, "requested-attributes", b"printer-name") + attr(0x44, "", b"printer-type")
        in data
    )


def response(*printers: list[bytes]) -> bytes:
    body = struct.pack(">BBHI", 2, 0, 0, 1) + b"\x01" + attr(0x47, "attributes-charset", b"utf-8")
    for values in printers:
        body += b"\x04"
        for index, value in enumerate(values):
            body += attr(0x42, "printer-name" if index == 0 else "", value)
        body += attr(0x23, "printer-type", b"\x00\x00\x00\x04")
    return body + b"\x03"


def test_response_decoding_whole_and_cut_at_every_byte() -> None:
    data = response([b"Laser"], [b"a;b", b"extra"])
    answer = decode_response(data)
    assert answer.ok
    assert answer.request_id == 1
    assert answer.values(0x04, "printer-name") == [["Laser"], ["a;b", "extra"]]
    assert answer.values(0x04, "printer-type") == [[b"\x00\x00\x00\x04"]] * 2
    for cut in range(len(data)):
        with pytest.raises(IppError):
            decode_response(data[:cut])


@pytest.mark.parametrize(
    "data",
    [
        b"\x09\x00" + bytes(7),  # version 9
        struct.pack(">BBHI", 2, 0, 0, 1) + attr(0x42, "printer-name", b"x") + b"\x03",  # no group
        struct.pack(">BBHI", 2, 0, 0, 1) + b"\x04" + attr(0x42, "", b"x") + b"\x03",  # no name
        struct.pack(">BBHI", 2, 0, 0, 1) + b"\x04" + struct.pack(">BH", 0x42, 0xFFFF) + b"\x03",
        response(*[[b"p"]] * 5000),  # too many values
        response([b"x" * 60000]) * 20,  # more than a MiB
    ],
)
def test_malformed_responses_are_refused(data: bytes) -> None:
    with pytest.raises(IppError):
        decode_response(data)


# ---- the device against real cupsds ----------------------------------------------------------
@pytest.fixture
def desktop_cupsd() -> Iterator[PrivateCupsd]:
    with PrivateCupsd() as cupsd:
        yield cupsd


@pytest.fixture
def client_cupsd() -> Iterator[PrivateCupsd]:
    """The client's CUPS, on a free port: 2000 + some display."""
    with PrivateCupsd() as cupsd:
        yield cupsd


def test_client_printers_over_ipp(client_cupsd: PrivateCupsd) -> None:
    client_cupsd.add_file_queue("first")
    client_cupsd.add_file_queue("second", default=True)
    listed = client_printers(f"127.0.0.1:{client_cupsd.port}")
    assert sorted(listed.names) == ["first", "second"]
    assert listed.default == "second"


def test_the_device_adds_queues_that_print_on_the_client_and_removes_them(
    desktop_cupsd: PrivateCupsd, client_cupsd: PrivateCupsd, tmp_path: Path
) -> None:
    display = client_cupsd.port - 2000
    assert printing_port(display) == client_cupsd.port
    desktop_cupsd.add_file_queue("local")  # the desktop's own queue: never touched
    target = client_cupsd.add_file_queue("Office", default=True)
    client_cupsd.add_file_queue("local")  # same name as the desktop's: another queue
    device = Printing()
    ctx = printing_context(desktop_cupsd.server, display, tmp_path, printing=True)

    device.connected(ctx)
    assert sorted(desktop_cupsd.queues()) == ["Office", "local", "local_2"]
    default = subprocess.run(["lpstat", "-h", desktop_cupsd.server, "-d"], capture_output=True,
                             text=True, check=True, env={"LC_ALL": "C"})  # fmt: skip
    assert default.stdout.strip().endswith(": Office")

    marker = f"qvd-print-{uuid.uuid4()}".encode()
    job = tmp_path / "job.txt"
    job.write_bytes(b"page one\n" + marker + b"\n")
    subprocess.run(["lp", "-h", desktop_cupsd.server, "-d", "Office", str(job)], check=True,
                   capture_output=True)  # fmt: skip
    assert marker in client_cupsd.wait_for_output(target, marker, 60)

    device.connected(ctx)  # a second connect: the same queues, not twice
    assert sorted(desktop_cupsd.queues()) == ["Office", "local", "local_2"]
    device.suspended(ctx)
    assert desktop_cupsd.queues() == ["local"]
    device.connected(ctx)  # resume
    assert sorted(desktop_cupsd.queues()) == ["Office", "local", "local_2"]
    device.stopped(ctx)
    assert desktop_cupsd.queues() == ["local"]


def test_no_printing_in_the_plan_no_queue(
    desktop_cupsd: PrivateCupsd, client_cupsd: PrivateCupsd, tmp_path: Path
) -> None:
    client_cupsd.add_file_queue("Office")
    device = Printing()
    device.connected(
        printing_context(desktop_cupsd.server, client_cupsd.port - 2000, tmp_path, printing=False)
    )
    assert desktop_cupsd.queues() == []


def test_a_client_without_cups_behind_the_channel_is_logged_not_fatal(
    desktop_cupsd: PrivateCupsd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    device = Printing()
    ctx = printing_context(desktop_cupsd.server, port - 2000, tmp_path, printing=True)
    device.connected(ctx)
    device.stopped(ctx)
    assert desktop_cupsd.queues() == []
    assert "no printer list" in caplog.text


def test_the_device_starts_the_desktops_cupsd_when_none_answers_and_stops_it(
    client_cupsd: PrivateCupsd, tmp_path: Path
) -> None:
    target = client_cupsd.add_file_queue("Office")
    desktop = PrivateCupsd(start=False)  # configured, not running: the VMA starts it
    try:
        assert not desktop.answers()
        settings = {**DEFAULTS, "vma.printing.cups.server": desktop.server,
                    "command.cupsd": str(desktop.launcher())}  # fmt: skip
        ctx = DeviceContext(
            user=pwd.getpwuid(0), display=client_cupsd.port - 2000,
            plan=ChannelPlan(printing=True), params={}, setting=lambda k: settings.get(k, ""),
            run_dir=tmp_path, log_dir=tmp_path, env={},
        )  # fmt: skip
        device = Printing()
        device.connected(ctx)
        assert desktop.answers()
        assert desktop.queues() == ["Office"]
        marker = f"qvd-print-{uuid.uuid4()}".encode()
        subprocess.run(["lp", "-h", desktop.server, "-d", "Office"], input=marker, check=True,
                       capture_output=True)  # fmt: skip
        assert client_cupsd.wait_for_output(target, marker, 60) == marker
        device.stopped(ctx)
        assert not desktop.answers()  # the cupsd it started is gone
    finally:
        desktop.close()
