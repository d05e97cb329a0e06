"""Attack test: a desktop forges its Ethernet or IPv4 source, or claims an address by
ARP (the node's, another desktop's, one outside the VM range).

Each "VM" here is a network namespace whose veth is a port of a bridge set up by the
node's own code (``NodeNetwork.ensure``) and admitted to the port filter the way the
HKD admits a VM's port (``PortFilter.admit``). The attacker writes raw frames on its
port; a capture on the receiving side (the other VM's ``eth0``, or the node's bridge
device) proves the forged frame never arrives, while a legitimate frame sent right
after it over the same path does."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.hkd.backends.lxc import LxcBackend
from qvd.hkd.daemon import Hkd
from qvd.hkd.ports import read_ports
from tests.hkd.conftest import (  # the real-LXC node's fixtures, for the last test
    add_host,
    command,
    lxc_node,
    lxc_storage,
    run_dir,
    state_of,
    test_image,
    wait_for,
)
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.security.hostile_net import (
    Capture,
    FakeVm,
    NodeNet,
    arp_frame,
    icmp6_echo_frame,
    link_local,
    marker,
    never_arrives,
    node_net,
    packet_socket,
    udp_frame,
)

__all__ = ["lxc_node", "lxc_storage", "run_dir", "test_image"]  # fixtures, used by name

pytestmark = pytest.mark.root

OUTSIDE = "192.0.2.77"  # TEST-NET-1: written in a frame on our own bridge, never routed


@pytest.fixture
def net(root_only: None) -> Iterator[NodeNet]:
    with node_net() as made:
        yield made


@pytest.fixture
def pair(net: NodeNet) -> tuple[FakeVm, FakeVm]:
    return net.add_vm(1), net.add_vm(2)


def _arp_control(attacker: FakeVm, target_ip: str) -> Callable[[bytes], None]:
    """A legitimate ARP request of the attacker (its own MAC and address)."""

    def send(mark: bytes) -> None:
        attacker.send(arp_frame(src_mac=attacker.mac, sender_mac=attacker.mac,
                                sender_ip=attacker.address, target_ip=target_ip,
                                payload=mark))  # fmt: skip

    return send


def _udp(
    attacker: FakeVm, *, src_mac: str, dst_mac: str, src: str, dst: str
) -> Callable[[bytes], None]:
    def send(mark: bytes) -> None:
        attacker.send(udp_frame(src_mac=src_mac, dst_mac=dst_mac, src=src, dst=dst,
                                sport=4100, dport=4100, payload=mark))  # fmt: skip

    return send


def test_a_vm_cannot_speak_to_another_vm_as_the_node(
    net: NodeNet, pair: tuple[FakeVm, FakeVm]
) -> None:
    attacker, victim = pair
    capture = victim.capture()
    try:
        arrived, forged = never_arrives(
            capture,
            _udp(
                attacker,
                src_mac=attacker.mac,
                dst_mac=victim.mac,
                src=net.node_address,
                dst=victim.address,
            ),
            _arp_control(attacker, victim.address),
        )
    finally:
        capture.close()
    assert arrived, "the legitimate ARP request did not reach the other VM"
    assert not forged, "a frame with the node's source address reached another VM"


@pytest.mark.parametrize("source", ["other VM", "outside the range"])
def test_a_vm_cannot_forge_its_ipv4_source_to_the_node(
    net: NodeNet, pair: tuple[FakeVm, FakeVm], source: str
) -> None:
    attacker, victim = pair
    forged_source = victim.address if source == "other VM" else OUTSIDE
    capture = net.node_capture()
    try:
        arrived, forged = never_arrives(
            capture,
            _udp(
                attacker,
                src_mac=attacker.mac,
                dst_mac=net.node_mac,
                src=forged_source,
                dst=net.node_address,
            ),
            _udp(
                attacker,
                src_mac=attacker.mac,
                dst_mac=net.node_mac,
                src=attacker.address,
                dst=net.node_address,
            ),
        )
    finally:
        capture.close()
    assert arrived, "the VM's own datagram did not reach the node"
    assert not forged, f"a datagram from {forged_source} ({source}) reached the node"


def test_a_vm_cannot_send_from_outside_the_range_to_another_vm(
    net: NodeNet, pair: tuple[FakeVm, FakeVm]
) -> None:
    attacker, victim = pair
    capture = victim.capture()
    try:
        arrived, forged = never_arrives(
            capture,
            _udp(
                attacker, src_mac=attacker.mac, dst_mac=victim.mac, src=OUTSIDE, dst=victim.address
            ),
            _arp_control(attacker, victim.address),
        )
    finally:
        capture.close()
    assert arrived
    assert not forged, "a datagram from outside the VM range reached another VM"


def test_a_vm_cannot_use_another_vms_mac(net: NodeNet, pair: tuple[FakeVm, FakeVm]) -> None:
    attacker, victim = pair
    capture = net.node_capture()
    try:
        arrived, forged = never_arrives(
            capture,
            _udp(
                attacker,
                src_mac=victim.mac,
                dst_mac=net.node_mac,
                src=attacker.address,
                dst=net.node_address,
            ),
            _udp(
                attacker,
                src_mac=attacker.mac,
                dst_mac=net.node_mac,
                src=attacker.address,
                dst=net.node_address,
            ),
        )
    finally:
        capture.close()
    assert arrived
    assert not forged, "a frame with another VM's source MAC reached the node"
    # nor did the bridge learn the victim's MAC on the attacker's port (stealing its traffic)
    fdb = subprocess.run(["bridge", "fdb", "show", "br", net.bridge, "brport", attacker.device],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert victim.mac not in fdb.lower()


@pytest.mark.parametrize("claimed", ["node", "other VM"])
def test_a_vm_cannot_claim_an_address_by_arp(
    net: NodeNet, pair: tuple[FakeVm, FakeVm], claimed: str
) -> None:
    """Gratuitous ARP replies (broadcast) claiming the node's or another VM's address:
    neither the other VM nor the node hears them, so no cache is poisoned."""
    attacker, victim = pair
    address = net.node_address if claimed == "node" else victim.address
    listener = victim if claimed == "node" else None
    capture = listener.capture() if listener is not None else net.node_capture()

    def claim(mark: bytes) -> None:
        attacker.send(arp_frame(src_mac=attacker.mac, sender_mac=attacker.mac,
                                sender_ip=address, target_ip=address, op=2,
                                payload=mark))  # fmt: skip

    try:
        arrived, forged = never_arrives(capture, claim, _arp_control(attacker, address))
    finally:
        capture.close()
    assert arrived
    assert not forged, f"an ARP reply claiming the {claimed}'s address {address} went through"
    neigh = subprocess.run(["ip", "neigh", "show", address, "dev", net.bridge],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert attacker.mac not in neigh.lower()


def test_an_arp_sender_mac_must_be_the_ports_own(net: NodeNet, pair: tuple[FakeVm, FakeVm]) -> None:
    attacker, victim = pair
    capture = net.node_capture()

    def forged_sender(mark: bytes) -> None:
        attacker.send(arp_frame(src_mac=attacker.mac, sender_mac=victim.mac,
                                sender_ip=attacker.address, target_ip=net.node_address,
                                payload=mark))  # fmt: skip

    try:
        arrived, forged = never_arrives(
            capture, forged_sender, _arp_control(attacker, net.node_address)
        )
    finally:
        capture.close()
    assert arrived
    assert not forged


def test_a_released_port_keeps_nothing_and_a_torn_down_network_leaves_nothing(
    net: NodeNet, pair: tuple[FakeVm, FakeVm]
) -> None:
    attacker, victim = pair
    assert set(net.ports.admitted()) == {attacker.device, victim.device}
    net.ports.release(attacker.device)
    net.ports.release(attacker.device)  # idempotent
    listed = subprocess.run(["nft", "list", "table", "bridge", net.network.table],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert attacker.device not in listed
    assert victim.device in listed
    net.network.remove(guard=True)
    for family in ("bridge", "inet"):
        gone = subprocess.run(["nft", "list", "table", family, net.network.table],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert gone.returncode != 0


# ---- the same attacks from a real desktop container started by the HKD -----------------


@pytest.fixture
def lxc_hkd(db: DatabaseTarget, engine: Engine, lxc_node: LxcNode) -> Iterator[Hkd]:
    add_host(engine, lxc_node.name, lxc_node.host_address)
    hkd = Hkd(lxc_node.config(), target=db)
    hkd.start()
    try:
        yield hkd
    finally:
        if not hkd.wait(0):
            hkd.stop()


def _send_from_vm(backend: LxcBackend, vm_id: int, frames: list[bytes]) -> None:
    script = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        "s.bind(('eth0', 0))\n"
        "for h in sys.argv[1:]:\n"
        "    s.send(bytes.fromhex(h))\n"
    )
    done = subprocess.run(
        ["lxc-attach", "-P", str(backend.layout.lxcpath), "-n", f"qvd-{vm_id}", "--",
         "python3", "-c", script, *(f.hex() for f in frames)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_a_real_desktop_cannot_spoof_and_its_port_goes_with_it(
    engine: Engine, lxc_hkd: Hkd, lxc_node: LxcNode, test_image: Path
) -> None:
    hkd, node = lxc_hkd, lxc_node
    assert hkd.host is not None
    assert hkd.network is not None
    backend = hkd.backend
    assert isinstance(backend, LxcBackend)
    first, osf_id = add_lxc_vm(engine, node, test_image, 1)
    second, _ = add_lxc_vm(engine, node, test_image, 2, osf_id=osf_id)
    for vm_id in (first, second):
        command(engine, vm_id, "start", hkd.host.id)
    for vm_id in (first, second):
        wait_for(lambda v=vm_id: state_of(engine, v) == "running", 60, f"VM {vm_id} running")  # type: ignore[misc]
    ports = read_ports(hkd.network.table)
    addresses = {p.address: p for p in ports.values()}
    assert set(addresses) == {node.vm_address(1), node.vm_address(2)}
    me, other = addresses[node.vm_address(1)], addresses[node.vm_address(2)]
    node_mac = Path(f"/sys/class/net/{node.bridge}/address").read_text().strip()
    marks = {name: marker() for name in ("as other", "outside", "as node", "ipv6", "own")}

    def udp(src: str, mark: bytes) -> bytes:
        return udp_frame(src_mac=me.mac, dst_mac=node_mac, src=src, dst=node.host_address,
                         sport=4100, dport=4100, payload=mark)  # fmt: skip

    frames = [
        udp(other.address, marks["as other"]),
        udp(OUTSIDE, marks["outside"]),
        arp_frame(
            src_mac=me.mac,
            sender_mac=me.mac,
            sender_ip=node.host_address,
            target_ip=node.host_address,
            op=2,
            payload=marks["as node"],
        ),
        icmp6_echo_frame(
            src_mac=me.mac,
            dst_mac="33:33:00:00:00:01",
            src=link_local(me.mac),
            dst="ff02::1",
            payload=marks["ipv6"],
        ),
        udp(me.address, marks["own"]),  # the legitimate one, last
    ]
    capture = Capture(packet_socket(None, node.bridge))
    try:
        _send_from_vm(backend, first, frames)
        assert capture.wait(marks["own"]), "the desktop's own datagram never reached the node"
        through = [name for name, mark in marks.items() if name != "own" and capture.has(mark)]
    finally:
        capture.close()
    assert through == []

    command(engine, first, "stop")
    wait_for(lambda: state_of(engine, first) == "stopped", 30, "VM stopped")
    assert set(read_ports(hkd.network.table)) == {other.device}
