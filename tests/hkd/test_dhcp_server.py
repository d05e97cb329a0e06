"""The node's dnsmasq for real: on a node network made by the HKD's own code (bridge,
firewall), with "VMs" that are network namespaces on the bridge asking for their
address with raw DHCP frames (``tests.hkd.dhcpclient``). Everything (namespaces, the
bridge, its nft tables, dnsmasq by its PID) goes at the end, failures included.

Then the HKD itself: its dnsmasq serves what the database says, and follows the VM
rows when they are added, re-addressed and deleted."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.hkd.addressing import mac_for
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import Hkd, HkdStartError
from qvd.hkd.dhcp import DhcpSettings, StaticLease
from qvd.hkd.dnsmasq import DhcpError, Dnsmasq
from qvd.hkd.ports import PortFilter
from tests.conftest import scratch_dir
from tests.hkd.conftest import FakeVma, add_host, hkd_config, wait_for
from tests.hkd.dhcpclient import ACK, OFFER, DhcpClient, dhcp_node
from tests.hkd.lxcnode import free_subnet
from tests.security.hostile_net import FakeVm, NodeNet, socket_in

pytestmark = pytest.mark.root

ANSWER = "192.0.2.7"  # what the test's upstream DNS answers to every A query


# ---- a fake upstream DNS server on loopback ------------------------------------------------
def dns_query(name: str, qid: int = 0x4242) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + b"\0\x01\0\x01"


def dns_answers(reply: bytes) -> tuple[int, list[str]]:
    """rcode and the A records of a DNS reply."""
    rcode = reply[3] & 0x0F
    count = struct.unpack("!H", reply[6:8])[0]
    i = 12
    while reply[i]:  # skip the question's name
        i += reply[i] + 1
    i += 5
    found: list[str] = []
    for _ in range(count):
        if reply[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while reply[i]:
                i += reply[i] + 1
            i += 1
        kind, _cls, _ttl, length = struct.unpack("!HHIH", reply[i : i + 10])
        i += 10
        if kind == 1:
            found.append(str(ipaddress.IPv4Address(reply[i : i + length])))
        i += length
    return rcode, found


class Upstream:
    """Answers every A query with ``ANSWER``; records the names it was asked."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.asked: list[bytes] = []
        self._done = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._done:
            try:
                query, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            self.asked.append(query)
            end = query.index(b"\0", 12) + 5
            head = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
            record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4)
            self.sock.sendto(
                head + query[12:end] + record + ipaddress.IPv4Address(ANSWER).packed, peer
            )

    def close(self) -> None:
        self._done = True
        self._thread.join(2)
        self.sock.close()


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def run_dir(root_only: None) -> Iterator[Path]:
    path = scratch_dir(f"qvd-test-dhcp-{os.getpid()}-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


Serve = Callable[..., tuple[NodeNet, Dnsmasq]]


@pytest.fixture
def serve(run_dir: Path, upstream: Upstream) -> Iterator[Serve]:
    """Factory: a node network (with the DHCP/DNS holes of its firewall) and a started
    dnsmasq on it; both removed at the end."""
    stack = contextlib.ExitStack()

    def make(*, dns: bool = False) -> tuple[NodeNet, Dnsmasq]:
        upstreams = (f"127.0.0.1#{upstream.port}",)
        return stack.enter_context(dhcp_node(run_dir, dns=dns, dns_servers=upstreams))

    with stack:
        yield make


@contextlib.contextmanager
def client(vm: FakeVm, mac: str | None = None) -> Iterator[DhcpClient]:
    made = DhcpClient(vm, mac)
    try:
        yield made
    finally:
        made.close()


def lease_of(vm: FakeVm, **changes: str | None) -> StaticLease:
    values: dict[str, str | None] = {"mac": vm.mac, "ip": vm.address}
    values.update(changes)
    return StaticLease(**values)  # type: ignore[arg-type]


# ---- the server ----------------------------------------------------------------------------
def test_a_vm_gets_the_address_of_its_mac_and_no_route(serve: Serve) -> None:
    net, server = serve()
    vm = net.add_vm(1)
    server.set_leases([lease_of(vm, hostname="desk-1")])
    with client(vm) as dhcp:
        offer = dhcp.discover()
        assert offer is not None
        assert offer.kind == OFFER
        assert offer.yiaddr == vm.address
        assert offer.address_option(54) == [net.node_address]  # the node answers
        ack = dhcp.request(offer)
    assert ack is not None
    assert ack.kind == ACK
    assert ack.yiaddr == vm.address
    assert ack.address_option(1) == [str(net.network.network.netmask)]
    assert ack.lease_time == 600
    assert ack.hostname == "desk-1"
    assert ack.router == []  # no egress: no default route
    assert ack.dns == []  # and no DNS server


def test_a_mac_that_is_not_in_the_leases_gets_no_offer(serve: Serve) -> None:
    net, server = serve()
    known, stranger = net.add_vm(1), net.add_vm(2)
    server.set_leases([lease_of(known)])
    with client(stranger) as dhcp:
        assert dhcp.discover(timeout=4) is None
    with client(known) as dhcp:  # the server was there all along
        offer = dhcp.discover()
    assert offer is not None
    assert offer.yiaddr == known.address


def test_lease_changes_are_served_after_the_reload(serve: Serve) -> None:
    net, server = serve()
    first, second = net.add_vm(1), net.add_vm(2)
    server.set_leases([lease_of(first)])
    with client(first) as dhcp:
        offer = dhcp.discover()
    assert offer is not None
    assert offer.yiaddr == first.address
    pid = server.pid

    # a new VM, and the first one moved to another address
    moved = str(net.network.ip_start + 50)
    assert server.set_leases([lease_of(first, ip=moved), lease_of(second)])
    assert server.pid == pid  # reloaded, not restarted
    with client(first) as dhcp:
        ack = dhcp.lease()
    assert ack is not None
    assert ack.yiaddr == moved
    with client(second) as dhcp:
        ack = dhcp.lease()
    assert ack is not None
    assert ack.yiaddr == second.address

    # the first VM deleted
    server.set_leases([lease_of(second)])
    with client(first) as dhcp:
        assert dhcp.discover(timeout=4) is None
    assert not server.set_leases([lease_of(second)])  # unchanged: no rewrite, no reload


def test_a_vm_with_egress_gets_a_route_and_the_bridge_as_dns(serve: Serve) -> None:
    net, server = serve(dns=True)
    out, closed = net.add_vm(1), net.add_vm(2)
    server.set_leases([lease_of(out, gateway=net.node_address), lease_of(closed)])
    with client(out) as dhcp:
        ack = dhcp.lease()
    assert ack is not None
    assert ack.router == [net.node_address]
    assert ack.dns == [net.node_address]
    with client(closed) as dhcp:
        ack = dhcp.lease()
    assert ack is not None
    assert ack.router == []
    assert ack.dns == []


def _ask_dns(vm: FakeVm, server: str, name: str) -> bytes | None:
    sock = socket_in(vm.ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(3)
        sock.sendto(dns_query(name), (server, 53))
        return sock.recv(512)
    except TimeoutError:
        return None
    finally:
        sock.close()


def _dns_sockets(pid: int) -> list[str]:
    """Local addresses of the listening sockets of ``pid`` on port 53 (UDP and TCP)."""
    found = []
    for kind in ("-lnup", "-lntp"):
        done = subprocess.run(["ss", "-H", kind], capture_output=True, text=True, check=True)
        for line in done.stdout.splitlines():
            if f"pid={pid}," in line:
                address, _, port = line.split()[3].rpartition(":")
                if port == "53":
                    found.append(address.split("%")[0])
    return found


def test_dns_answers_on_the_bridge_only_through_the_upstreams(
    serve: Serve, upstream: Upstream
) -> None:
    net, server = serve(dns=True)
    vm = net.add_vm(1)
    server.set_leases([lease_of(vm, hostname="desk-1")])
    reply = _ask_dns(vm, net.node_address, "desktop.example")
    assert reply is not None
    assert dns_answers(reply) == (0, [ANSWER])
    assert any(b"desktop" in query for query in upstream.asked)
    assert server.pid is not None
    bound = _dns_sockets(server.pid)
    assert bound
    assert set(bound) == {net.node_address}  # not 0.0.0.0, not loopback
    # the VMs' names are not given out over DNS (another tenant's VM could ask)
    reply = _ask_dns(vm, net.node_address, "desk-1")
    assert reply is not None
    assert dns_answers(reply)[1] == []


def test_without_dns_nothing_listens_on_port_53(serve: Serve) -> None:
    net, server = serve()
    vm = net.add_vm(1)
    assert server.pid is not None
    assert _dns_sockets(server.pid) == []
    assert _ask_dns(vm, net.node_address, "desktop.example") in (None, b"")


def test_a_dead_dnsmasq_is_restarted_and_stop_ends_it(serve: Serve) -> None:
    net, server = serve()
    vm = net.add_vm(1)
    server.set_leases([lease_of(vm)])
    first = server.pid
    assert first is not None
    os.kill(first, 9)  # the process we started, by its PID
    wait_for(lambda: server.pid not in (None, first), 20, "dnsmasq restarted")
    assert server.restarts == 1
    with client(vm) as dhcp:
        offer = dhcp.discover()
    assert offer is not None
    assert offer.yiaddr == vm.address  # the leases came back with it
    second = server.pid
    assert second is not None
    server.stop()
    assert server.pid is None
    assert not Path(f"/proc/{second}").exists()
    assert not server.settings.pid_file.exists()


def test_a_dnsmasq_left_by_an_earlier_hkd_is_ended_first(serve: Serve) -> None:
    net, server = serve()
    vm = net.add_vm(1)
    old = server.pid
    assert old is not None
    # an HKD killed with -9: its dnsmasq runs on; a new HKD makes a new Dnsmasq
    left = server._proc  # forget it, as a new process would (it is still reaped here)
    assert left is not None
    server._stop.set()
    server._proc = None
    again = Dnsmasq(server.settings)
    try:
        again.start()
        assert again.pid not in (None, old)
        assert left.wait(10) is not None  # the old dnsmasq ended
        again.set_leases([lease_of(vm)])
        with client(vm) as dhcp:
            offer = dhcp.discover()
        assert offer is not None
    finally:
        again.stop()
        with contextlib.suppress(ProcessLookupError):
            os.kill(old, 9)


def test_a_run_directory_dnsmasq_cannot_reach_is_a_clear_error(
    run_dir: Path, upstream: Upstream
) -> None:
    hidden = run_dir / "private"
    hidden.mkdir(mode=0o700)
    settings = DhcpSettings(
        enabled=True, bridge="qvdnone", server_address="10.231.0.2",
        network=ipaddress.IPv4Network("10.231.0.0/16"), lease_time=600, dns=False,
        dns_servers=(), run_dir=hidden / "dhcp",
    )  # fmt: skip
    with pytest.raises(DhcpError, match="cannot reach"):
        Dnsmasq(settings).start()


# ---- the HKD keeps the leases of the database ------------------------------------------------
def _add_vm(engine: Engine, name: str, ip: str) -> int:
    with engine.begin() as conn:
        user_id = conn.execute(
            text("INSERT INTO users (tenant_id, login) VALUES (1, :l) RETURNING id"),
            {"l": f"u-{name}"},
        ).scalar_one()
        osf_id = conn.execute(
            text("INSERT INTO osfs (tenant_id, name, memory) VALUES (1, :n, 128) RETURNING id"),
            {"n": f"osf-{name}"},
        ).scalar_one()
        return int(
            conn.execute(
                text("INSERT INTO vms (name, user_id, osf_id, ip) VALUES (:n, :u, :o, :ip) "
                     "RETURNING id"),
                {"n": name, "u": user_id, "o": osf_id, "ip": ip},
            ).scalar_one()
        )  # fmt: skip


def _served(vm: FakeVm, timeout: float = 4) -> str | None:
    with client(vm) as dhcp:
        offer = dhcp.discover(timeout=timeout)
    return None if offer is None else offer.yiaddr


def test_the_hkd_serves_the_leases_of_the_database_and_follows_its_changes(
    db: DatabaseTarget, engine: Engine, run_dir: Path
) -> None:
    subnet = free_subnet()
    bridge = f"qvdh{os.urandom(3).hex()}"
    host = add_host(engine, "node1", str(subnet.network_address + 2))
    first_ip, second_ip = str(subnet.network_address + 101), str(subnet.network_address + 102)
    first = _add_vm(engine, "desk-1", first_ip)
    config = hkd_config(run_dir, **{
        "vm.network.bridge.manage": "1", "vm.network.bridge": bridge,
        "vm.network.ip.start": str(subnet.network_address + 100),
        "vm.network.netmask": str(subnet.prefixlen),
        "internal.hkd.poll.delay": "30",  # changes must come by NOTIFY, not the poll
    })  # fmt: skip
    hkd = Hkd(config, backend=FakeBackend(), vma=FakeVma(), target=db)
    hkd.start()
    assert hkd.network is not None
    net = NodeNet(hkd.network, PortFilter(hkd.network.table))  # removes the bridge too
    try:
        assert hkd.dhcp is not None
        dnsmasq_pid = hkd.dhcp.server.pid
        assert dnsmasq_pid is not None
        # a namespace per MAC (the port filter lets each ask only in its own name)
        vm1, vm2, vm50 = net.add_vm(1), net.add_vm(2), net.add_vm(50)
        assert host.address == net.node_address
        assert vm1.mac == mac_for(first_ip)
        assert _served(vm1, timeout=10) == first_ip

        second = _add_vm(engine, "desk-2", second_ip)  # a new VM
        wait_for(lambda: _served(vm2, 2) == second_ip, 20, "new VM")

        moved = str(subnet.network_address + 150)  # an address changed
        with engine.begin() as conn:
            conn.execute(text("UPDATE vms SET ip = :ip WHERE id = :v"), {"ip": moved, "v": first})
        wait_for(lambda: _served(vm50, 2) == moved, 20, "moved VM")
        assert _served(vm1) is None

        with engine.begin() as conn:  # a VM deleted
            conn.execute(text("DELETE FROM vm_runtimes WHERE vm_id = :v"), {"v": second})
            conn.execute(text("DELETE FROM vms WHERE id = :v"), {"v": second})
        wait_for(lambda: _served(vm2, 2) is None, 20, "deleted VM")
    finally:
        hkd.stop()
        net.close()
    assert not Path(f"/proc/{dnsmasq_pid}").exists()  # stopped with the HKD


def test_the_hkd_refuses_to_start_when_its_dhcp_cannot(
    db: DatabaseTarget, engine: Engine, run_dir: Path
) -> None:
    subnet = free_subnet()
    bridge = f"qvdh{os.urandom(3).hex()}"
    add_host(engine, "node1", str(subnet.network_address + 2))
    config = hkd_config(run_dir, **{
        "vm.network.bridge.manage": "1", "vm.network.bridge": bridge,
        "vm.network.ip.start": str(subnet.network_address + 100),
        "vm.network.netmask": str(subnet.prefixlen),
        "vm.network.dns.enable": "1",  # and no upstream
    })  # fmt: skip
    hkd = Hkd(config, backend=FakeBackend(), vma=FakeVma(), target=db)
    with pytest.raises(HkdStartError, match=r"vm\.network\.dns\.servers"):
        hkd.start()
