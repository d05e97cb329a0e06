"""A node network made by the HKD's own code, with network namespaces plugged into its
bridge as VMs (a netns with a veth on the bridge acts like a VM: same port, same
filter), raw frames sent from them and captures on the receiving side.

Everything is named uniquely and removed on exit, failures included. Traffic stays on
the project's own bridge and namespaces: frames are written to a port and read from
another (or from the bridge device of the node), never routed anywhere else.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qvd.hkd.network import NodeNetwork
from qvd.hkd.ports import Port, PortFilter
from tests.hkd.lxcnode import free_subnet

__all__ = [
    "Capture",
    "FakeVm",
    "NodeNet",
    "arp_frame",
    "ether",
    "icmp6_echo_frame",
    "node_net",
    "socket_in",
    "udp_frame",
]

_CLONE_NEWNET = 0x40000000
_ETH_P_ALL = 0x0003
_libc = ctypes.CDLL(None, use_errno=True)


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, text=True)


def socket_in(ns: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket of network namespace ``ns`` (None: this one). It is created by a
    throwaway thread that enters ``ns``, so this process stays where it is; the socket
    belongs to ``ns`` for its whole life."""
    made: list[socket.socket] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            if ns is not None:
                fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
                try:
                    if _libc.setns(fd, _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns {ns}")
                finally:
                    os.close(fd)
            made.append(socket.socket(family, kind, proto))
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return made[0]


def packet_socket(ns: str | None, device: str) -> socket.socket:
    """A raw AF_PACKET socket on ``device`` in namespace ``ns`` (None: this one)."""
    sock = socket_in(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    sock.bind((device, 0))
    return sock


# ---- frames ----------------------------------------------------------------------------
def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ether(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    frame = _mac(dst) + _mac(src) + struct.pack("!H", ethertype) + payload
    return frame.ljust(60, b"\0")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(
    *, src_mac: str, dst_mac: str, src: str, dst: str, sport: int, dport: int, payload: bytes
) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return ether(dst_mac, src_mac, 0x0800, header + udp)


def arp_frame(
    *, src_mac: str, sender_mac: str, sender_ip: str, target_ip: str, op: int = 1,
    dst_mac: str = "ff:ff:ff:ff:ff:ff", payload: bytes = b"",
) -> bytes:  # fmt: skip
    arp = struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, _mac(sender_mac),
        ipaddress.IPv4Address(sender_ip).packed, b"\0" * 6,
        ipaddress.IPv4Address(target_ip).packed,
    )  # fmt: skip
    return ether(dst_mac, src_mac, 0x0806, arp + payload)


def icmp6_echo_frame(*, src_mac: str, dst_mac: str, src: str, dst: str, payload: bytes) -> bytes:
    body = struct.pack("!BBHHH", 128, 0, 0, 1, 1) + payload
    pseudo = (
        ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
        + struct.pack("!I3xB", len(body), 58)
    )  # fmt: skip
    body = body[:2] + struct.pack("!H", _checksum(pseudo + body)) + body[4:]
    header = struct.pack("!IHBB", 6 << 28, len(body), 58, 64)
    header += ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    return ether(dst_mac, src_mac, 0x86DD, header + body)


def link_local(mac: str) -> str:
    """The EUI-64 link-local address of a MAC."""
    raw = bytearray(_mac(mac))
    raw[0] ^= 0x02
    eui = bytes(raw[:3]) + b"\xff\xfe" + bytes(raw[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + eui))


# ---- captures --------------------------------------------------------------------------
class Capture:
    """Every frame that arrives on a device, collected by a thread until closed."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sock.settimeout(0.1)
        self.frames: list[bytes] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] == socket.PACKET_OUTGOING:
                continue  # what this side sent itself
            with self._cond:
                self.frames.append(data)
                self._cond.notify_all()

    def has(self, marker: bytes) -> bool:
        with self._cond:
            return any(marker in frame for frame in self.frames)

    def wait(self, marker: bytes, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        with self._cond:
            while not any(marker in frame for frame in self.frames):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self._sock.close()


# ---- a node network and its "VMs" ------------------------------------------------------
@dataclass
class FakeVm:
    """A network namespace whose ``eth0`` is a port of the node's bridge."""

    ns: str
    device: str  # host side, on the bridge
    mac: str
    address: str

    def send(self, frame: bytes) -> None:
        sock = packet_socket(self.ns, "eth0")
        try:
            sock.send(frame)
        finally:
            sock.close()

    def capture(self) -> Capture:
        return Capture(packet_socket(self.ns, "eth0"))

    def run(self, *argv: str) -> str:
        done = subprocess.run(["ip", "netns", "exec", self.ns, *argv],
                              capture_output=True, text=True, check=True)  # fmt: skip
        return done.stdout

    def eth0_index(self) -> int:
        return int(self.run("cat", "/sys/class/net/eth0/ifindex"))


@dataclass
class NodeNet:
    network: NodeNetwork
    ports: PortFilter
    vms: list[FakeVm] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return self.network.bridge

    @property
    def node_mac(self) -> str:
        return Path(f"/sys/class/net/{self.bridge}/address").read_text().strip()

    @property
    def node_address(self) -> str:
        return self.network.host_address

    def vm_address(self, n: int) -> str:
        return str(self.network.ip_start + n)

    def add_vm(self, n: int, *, admit: bool = True, device: str | None = None) -> FakeVm:
        """A "VM" at ``vm_address(n)``, admitted to the port filter as the HKD does
        (its port on the node named ``device``, a unique name by default)."""
        tag = secrets.token_hex(3)
        address = self.vm_address(n)
        mac = "54:52:00:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed[1:])
        device = f"qvdv{tag}" if device is None else device
        vm = FakeVm(ns=f"qvdt-vm-{tag}", device=device, mac=mac, address=address)
        self.vms.append(vm)
        _run("ip", "netns", "add", vm.ns)
        if admit:
            self.ports.admit(Port(vm.device, vm.mac, vm.address))
        _run("ip", "link", "add", vm.device, "type", "veth", "peer", "name", f"qvdi{tag}")
        _run("ip", "link", "set", f"qvdi{tag}", "netns", vm.ns)
        ns = ("ip", "netns", "exec", vm.ns)
        _run(*ns, "ip", "link", "set", f"qvdi{tag}", "name", "eth0")
        _run(*ns, "ip", "link", "set", "eth0", "address", mac)
        _run(*ns, "ip", "addr", "add", f"{address}/{self.network.network.prefixlen}",
             "dev", "eth0")  # fmt: skip
        _run(*ns, "ip", "link", "set", "lo", "up")
        _run(*ns, "ip", "link", "set", "eth0", "up")
        _run("ip", "link", "set", vm.device, "master", self.bridge, "up")
        if admit:
            self.ports.admit(Port(vm.device, vm.mac, vm.address))  # IPv6 off on the device
        return vm

    def node_capture(self) -> Capture:
        return Capture(packet_socket(None, self.bridge))

    def node_send(self, frame: bytes) -> None:
        sock = packet_socket(None, self.bridge)
        try:
            sock.send(frame)
        finally:
            sock.close()

    def close(self) -> None:
        for vm in self.vms:
            subprocess.run(["ip", "link", "del", vm.device], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", vm.ns], capture_output=True, check=False)
        self.network.remove(guard=True)


@contextlib.contextmanager
def node_net(*, firewall: bool = True, dhcp: bool = False, dns: bool = False) -> Iterator[NodeNet]:
    """A node network set up by ``NodeNetwork.ensure`` on a free private /24."""
    subnet = free_subnet()
    network = NodeNetwork(
        bridge=f"qvds{secrets.token_hex(3)}", host_address=str(subnet.network_address + 2),
        network=subnet, ip_start=subnet.network_address + 100, vma_port=3030, x_port=4100,
        firewall=firewall, dhcp=dhcp, dns=dns,
    )  # fmt: skip
    net = NodeNet(network, PortFilter(network.table))
    try:
        network.ensure()
        yield net
    finally:
        net.close()


def marker() -> bytes:
    return b"QVDMARK" + secrets.token_bytes(12)


def never_arrives(
    capture: Capture, attack: Callable[[bytes], None], control: Callable[[bytes], None]
) -> tuple[bool, bool]:
    """Send the attack, then a legitimate frame over the same path; wait for the
    legitimate one. Returns (control arrived, attack arrived): frames on one bridge
    path keep their order, so once the control is in, the attack had its chance."""
    bad, good = marker(), marker()
    attack(bad)
    control(good)
    arrived = capture.wait(good)
    return arrived, capture.has(bad)
