"""Attack test: a KVM desktop forges its Ethernet or IPv4 source, or speaks IPv6, on
its tap.

The tap is made by the KVM backend's own code (``create_tap``, as ``start`` makes it:
named after the VM's host device, on the node's bridge, IPv6 off) on a bridge set up
by the node's own code, and admitted to the port filter the way the HKD admits a VM's
port. The test then plays the guest: it attaches to the tap as QEMU does
(``/dev/net/tun``, ``TUNSETIFF``) and writes raw frames, as a guest's virtio-net would.
A capture on the node's bridge proves the forged frames never arrive while a
legitimate one sent right after each does: the LXC anti-spoofing, keyed by host
device, holds unchanged for taps."""

from __future__ import annotations

import fcntl
import os
import secrets
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qvd.hkd.backends.kvm.tap import create_tap, delete_tap
from qvd.hkd.ports import Port
from tests.security.hostile_net import (
    NodeNet,
    icmp6_echo_frame,
    link_local,
    never_arrives,
    node_net,
    udp_frame,
)

pytestmark = pytest.mark.root

_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI = 0x0002, 0x1000
OUTSIDE = "192.0.2.77"  # TEST-NET-1: written in a frame on our own bridge, never routed


@dataclass
class TapGuest:
    """The guest side of a tap: what QEMU writes is what the guest sends."""

    device: str
    mac: str
    address: str
    fd: int

    def send(self, frame: bytes) -> None:
        os.write(self.fd, frame)


@pytest.fixture
def net(root_only: None) -> Iterator[NodeNet]:
    with node_net() as made:
        yield made


@pytest.fixture
def guest(net: NodeNet) -> Iterator[TapGuest]:
    device = f"qvdk{secrets.token_hex(3)}"
    address = net.vm_address(7)
    mac = "54:52:00:" + ":".join(f"{int(o):02x}" for o in address.split(".")[1:])
    create_tap(device, net.bridge)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", device.encode(), _IFF_TAP | _IFF_NO_PI))
        net.ports.admit(Port(device, mac, address))  # as the HKD admits a started VM
        yield TapGuest(device, mac, address, fd)
    finally:
        os.close(fd)
        net.ports.release(device)
        delete_tap(device)


def _udp(guest: TapGuest, net: NodeNet, *, src_mac: str, src: str) -> Callable[[bytes], None]:
    def send(mark: bytes) -> None:
        guest.send(udp_frame(src_mac=src_mac, dst_mac=net.node_mac, src=src,
                             dst=net.node_address, sport=4100, dport=4100,
                             payload=mark))  # fmt: skip

    return send


def test_the_tap_is_a_port_of_the_bridge_without_ipv6(net: NodeNet, guest: TapGuest) -> None:
    sysfs = Path("/sys/class/net") / guest.device
    assert (sysfs / "master").resolve().name == net.bridge
    assert Path(f"/proc/sys/net/ipv6/conf/{guest.device}/disable_ipv6").read_text() == "1\n"


@pytest.mark.parametrize("source", ["the node", "another VM", "outside the range"])
def test_a_kvm_guest_cannot_forge_its_ipv4_source(
    net: NodeNet, guest: TapGuest, source: str
) -> None:
    forged = {
        "the node": net.node_address,
        "another VM": net.vm_address(8),
        "outside the range": OUTSIDE,
    }[source]
    capture = net.node_capture()
    try:
        arrived, leaked = never_arrives(
            capture,
            _udp(guest, net, src_mac=guest.mac, src=forged),
            _udp(guest, net, src_mac=guest.mac, src=guest.address),
        )
    finally:
        capture.close()
    assert arrived, "the guest's own datagram did not reach the node"
    assert not leaked, f"a datagram from {forged} ({source}) reached the node"


def test_a_kvm_guest_cannot_forge_its_mac(net: NodeNet, guest: TapGuest) -> None:
    capture = net.node_capture()
    try:
        arrived, leaked = never_arrives(
            capture,
            _udp(guest, net, src_mac="54:52:00:aa:bb:cc", src=guest.address),
            _udp(guest, net, src_mac=guest.mac, src=guest.address),
        )
    finally:
        capture.close()
    assert arrived, "the guest's own datagram did not reach the node"
    assert not leaked, "a frame with a forged Ethernet source reached the node"


def test_a_kvm_guest_cannot_speak_ipv6(net: NodeNet, guest: TapGuest) -> None:
    capture = net.node_capture()
    try:
        arrived, leaked = never_arrives(
            capture,
            lambda mark: guest.send(
                icmp6_echo_frame(
                    src_mac=guest.mac,
                    dst_mac=net.node_mac,
                    src=link_local(guest.mac),
                    dst=link_local(net.node_mac),
                    payload=mark,
                )
            ),
            _udp(guest, net, src_mac=guest.mac, src=guest.address),
        )
    finally:
        capture.close()
    assert arrived, "the guest's own datagram did not reach the node"
    assert not leaked, "an IPv6 frame from the guest reached the node"
