"""The VMA's USB/IP attach service (``qvd.vma.usb``) against a vhci-hcd sysfs directory
in a temporary folder (``tests/vma/usbfakes.py``), with the slave program's side played
over its real Unix socket and the client's side by the emulated device
(``tests/usbipdev.py``) on the other end of a socketpair: the import handshake, the
attach line, the device node given to the user, the detach on suspend and when the
client goes; and the slave program's channel socket (a socket passed as it is, pipes
bridged)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qvd.vma.usb import UsbAttachService, import_over
from qvd.vma.usbip import UsbipError, import_reply, parse_import_request
from qvd.vma.usbslave import channel_socket
from tests.usbipdev import BUSID, PRODUCT_ID, VENDOR_ID, EmulatedDevice, get_descriptor
from tests.vma.usbfakes import USER_UID, FakeVhci, attach_service
from tests.vma.usbfakes import vhci as vhci


@pytest.fixture
def service(tmp_path: Path, vhci: FakeVhci) -> Iterator[UsbAttachService]:
    yield from attach_service(tmp_path, vhci)


def client_side(channel: socket.socket, device: EmulatedDevice) -> threading.Thread:
    """The exporter: answer OP_REQ_IMPORT with the emulated device, then serve URBs."""

    def play() -> None:
        data = b""
        while len(data) < 40:
            chunk = channel.recv(40 - len(data))
            if not chunk:
                return
            data += chunk
        busid = parse_import_request(data)
        channel.sendall(import_reply(device.info(busid)))
        device.serve(channel)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread


def read_line(sock: socket.socket) -> str:
    sock.settimeout(30)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


def hand_over(path: Path, busid: str, channel: socket.socket) -> tuple[socket.socket, str]:
    """The slave program's side: READY, then ATTACH with the channel; the answer."""
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.connect(str(path))
    assert read_line(control) == "READY"
    socket.send_fds(control, [f"ATTACH {busid}\n".encode()], [channel.fileno()])
    return control, read_line(control)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_socket_is_the_users_only(service: UsbAttachService) -> None:
    st = os.stat(service.path)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (USER_UID, USER_UID, 0o600)


def test_a_device_is_imported_attached_given_to_the_user_and_detached_on_suspend(
    service: UsbAttachService, vhci: FakeVhci
) -> None:
    ours, theirs = socket.socketpair()
    device = EmulatedDevice()
    client_side(ours, device)
    with theirs:
        control, answer = hand_over(service.path, BUSID, theirs)
    assert answer == f"OK 0 {VENDOR_ID:04x}:{PRODUCT_ID:04x}"
    # vhci-hcd got the stream's socket: the devid and speed the client announced
    ((port, dev, speed, _ino),) = vhci.attached
    assert (port, dev, speed) == (0, 7 << 16 | 2, 3)
    assert service.attached_ports() == [0]
    node = vhci.dev_usb / "003" / "002"
    wait_until(lambda: node.stat().st_uid == USER_UID, "the node given to the user")
    assert node.stat().st_mode & 0o777 == 0o600  # made the user's only once it was 0600
    # the socket vhci-hcd holds is the client's stream: URBs reach the emulated device
    held = vhci.held[0]
    device_descriptor = get_descriptor(held, 9, 1, 18)  # RET_SUBMIT, the same seqnum
    assert device_descriptor[8:12] == VENDOR_ID.to_bytes(2, "little") + PRODUCT_ID.to_bytes(
        2, "little"
    )
    # suspend: every port detached, the slave program's wait ends
    service.detach_all()
    assert vhci.detached == [0]
    assert read_line(control) == ""
    assert service.attached_ports() == []
    control.close()


def test_a_port_the_kernel_freed_ends_the_wait_and_the_slave_leaving_detaches(
    service: UsbAttachService, vhci: FakeVhci
) -> None:
    pairs = [socket.socketpair() for _ in range(2)]
    controls = []
    for ours, theirs in pairs:
        client_side(ours, EmulatedDevice())
        with theirs:
            control, answer = hand_over(service.path, BUSID, theirs)
        assert answer.startswith("OK ")
        controls.append(control)
    assert service.attached_ports() == [0, 1]
    vhci.free(0)  # the client went away: vhci-hcd let port 0 go
    assert read_line(controls[0]) == ""
    wait_until(lambda: service.attached_ports() == [1], "port 0 forgotten")
    controls[1].close()  # the slave program went: port 1 is detached
    wait_until(lambda: vhci.detached == [1], "port 1 detached")
    controls[0].close()
    for ours, _ in pairs:
        ours.close()


def test_a_refused_or_hostile_client_leaves_the_service_serving(
    service: UsbAttachService, vhci: FakeVhci
) -> None:
    ours, theirs = socket.socketpair()

    def refuse() -> None:
        ours.recv(40)
        ours.sendall(import_reply(None))

    threading.Thread(target=refuse, daemon=True).start()
    with theirs, ours:
        control, answer = hand_over(service.path, BUSID, theirs)
        control.close()
    assert answer == "ERR the client refused to export the device (status 1)"
    assert vhci.attached == []
    # the next device still attaches
    ours2, theirs2 = socket.socketpair()
    client_side(ours2, EmulatedDevice())
    with theirs2:
        control, answer = hand_over(service.path, BUSID, theirs2)
        control.close()
    assert answer.startswith("OK 0 ")


def test_without_vhci_hcd_the_service_says_why(tmp_path: Path) -> None:
    vhci = FakeVhci(tmp_path)
    (vhci.directory / "attach").unlink()
    svc = UsbAttachService(tmp_path / "u.sock", USER_UID, USER_UID, vhci)
    try:
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.connect(str(svc.path))
        assert read_line(control) == (
            "ERR USB/IP is not available in this desktop: the vhci-hcd kernel module is not loaded"
        )
        control.close()
    finally:
        svc.close()


def test_import_over_reads_a_bounded_reply_in_bounded_time() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs, pytest.raises(UsbipError, match="in time"):
        import_over(theirs, BUSID, timeout=0.5)  # the client never answers
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(b"\x01\x11\x00\x03\0\0\0\0" + b"\xff" * 4096)  # a flood after the head
        with pytest.raises(UsbipError, match="NUL-terminated"):
            import_over(theirs, BUSID, timeout=5)
        # only the handshake's 320 bytes were read: the rest is still in the socket
        theirs.setblocking(False)
        left = b""
        while True:
            try:
                chunk = theirs.recv(65536)
            except BlockingIOError:
                break
            left += chunk
        assert len(left) == 4096 - 312


def test_a_socket_channel_is_passed_as_it_is() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        channel, ended = channel_socket(theirs.fileno(), theirs.fileno())
        with channel:
            assert os.fstat(channel.fileno()).st_ino == os.fstat(theirs.fileno()).st_ino
            assert not ended.is_set()


def test_pipes_are_bridged_through_a_socketpair() -> None:
    """nxagent's channel on two pipes: a relay copies both ways (vhci-hcd needs a socket)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    channel, ended = channel_socket(in_r, out_w)
    with channel:
        assert channel.type == socket.SOCK_STREAM
        os.write(in_w, b"from the client")
        channel.settimeout(10)
        assert channel.recv(100) == b"from the client"
        channel.sendall(b"to the client")
        assert os.read(out_r, 100) == b"to the client"
        os.close(in_w)  # the channel ended
        assert ended.wait(10)
    for fd in (in_r, out_r, out_w):
        os.close(fd)


def test_another_user_cannot_reach_the_service(service: UsbAttachService) -> None:
    probe = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX)\n"
        "try:\n s.connect(sys.argv[1])\nexcept OSError as e:\n print('refused', e.errno)\n"
        "else:\n print('connected', s.recv(100))\n"
    )
    done = subprocess.run(
        ["python3", "-c", probe, str(service.path)], user=1, group=1, extra_groups=[],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert done.stdout.strip() == "refused 13", done  # EACCES: the socket is the user's


def test_the_vma_device_follows_the_session(tmp_path: Path, vhci: FakeVhci) -> None:
    """``UsbDevice`` (the registry's): no service without USB in the plan; with it the
    service listens from the connect, suspend detaches, stop removes the socket."""
    import pwd

    from qvd.vma.channels import ChannelPlan
    from qvd.vma.devices import DEVICES, DeviceContext
    from qvd.vma.usb import UsbDevice

    assert "usb" in [d.name for d in DEVICES()]

    def ctx(plan: ChannelPlan) -> DeviceContext:
        return DeviceContext(user=pwd.getpwuid(USER_UID), display=100, plan=plan, params={},
                             setting=lambda key: "", run_dir=tmp_path, log_dir=tmp_path,
                             env={})  # fmt: skip

    device = UsbDevice(vhci)  # vhci-hcd "loaded": no modprobe
    device.connected(ctx(ChannelPlan(slave=True)))
    assert not (tmp_path / "usbip.sock").exists()
    with_usb = ctx(ChannelPlan(slave=True, usb=True))
    device.connected(with_usb)
    assert (tmp_path / "usbip.sock").stat().st_uid == USER_UID
    device.connected(with_usb)  # a resume: the same service
    ours, theirs = socket.socketpair()
    client_side(ours, EmulatedDevice())
    with theirs:
        control, answer = hand_over(tmp_path / "usbip.sock", BUSID, theirs)
    assert answer.startswith("OK ")
    device.suspended(with_usb)
    assert vhci.detached == [0]
    assert read_line(control) == ""
    control.close()
    device.stopped(with_usb)
    assert not (tmp_path / "usbip.sock").exists()
