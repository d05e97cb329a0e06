"""A node with an uplink to "the outside", all in network namespaces this module makes.

- ``node``: the node's own namespace. Its VM bridge and firewall are set up by the
  HKD's code (``NodeNetwork.ensure``) run inside it; ``ip_forward`` is turned on there
  only. It has an uplink (a veth to ``outside``, default route through it) and a
  second network of its own (a veth to ``lan``) that desktops must never reach.
- ``outside``: stands for the Internet: the far end of the uplink plus a public-looking
  address (TEST-NET-3) and a private one routed through it, each with a TCP echo
  that answers with the source address it saw.
- ``lan``: another network of the node, with an echo too.
- "VMs": namespaces whose ``eth0`` is a port of the node's bridge, admitted to the port
  filter and to the egress set the way the HKD admits a VM.

No packet leaves the machine: every address lives in these namespaces, and a client
checks its route (``ip route get`` in its namespace) before it connects. Everything
is named uniquely and removed on exit (deleting a namespace removes its links, its
nft tables and its sysctls), failures included.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from qvd.hkd.egress import EgressFilter, EgressRules
from qvd.hkd.network import NodeNetwork
from qvd.hkd.ports import Port, PortFilter

__all__ = ["EgressLab", "Vm", "egress_lab", "in_netns", "run_in"]

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")

VM_NET = ipaddress.IPv4Network("10.77.0.0/24")
NODE_ADDRESS = "10.77.0.2"
UPLINK_NODE, UPLINK_FAR = "198.18.7.1", "198.18.7.2"  # the uplink's link (benchmark range)
PUBLIC = "203.0.113.10"  # TEST-NET-3, on the outside's loopback
PRIVATE_OUTSIDE = "192.168.77.10"  # a private address behind the uplink (denied by default)
LAN_NODE, LAN_FAR = "10.215.9.1", "10.215.9.2"  # the node's other network


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a throwaway thread that entered ``ns``: the commands it starts
    and the /proc/sys/net files it writes are that namespace's; this process stays."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _run(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout


def run_in(ns: str, *argv: str) -> str:
    return _run("ip", "netns", "exec", ns, *argv)


class Echo:
    """A TCP server in a namespace that answers each connection with the peer's
    address and closes."""

    def __init__(self, ns: str, address: str) -> None:
        from tests.security.hostile_net import socket_in

        self.sock = socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.address, self.port = address, self.sock.getsockname()[1]
        self.seen: list[str] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self.seen.append(peer[0])
                conn.sendall(f"from {peer[0]}\n".encode())

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()


@dataclass
class Vm:
    ns: str
    device: str
    mac: str
    address: str

    def route(self, to: str) -> str:
        """``ip route get`` in the VM's namespace ('' when there is no route)."""
        done = subprocess.run(["ip", "netns", "exec", self.ns, "ip", "-o", "route", "get", to],
                              capture_output=True, text=True, check=False)  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else ""

    def set_gateway(self, gateway: str | None) -> None:
        """What LXC's ``ipv4.gateway`` or a DHCP router option does (or a VM's root
        adding a route by itself)."""
        run_in(self.ns, "ip", "route", "flush", "exact", "0.0.0.0/0")
        if gateway is not None:
            run_in(self.ns, "ip", "route", "add", "default", "via", gateway, "dev", "eth0")

    def connect(self, echo: Echo, timeout: float = 3.0) -> str | None:
        """The echo's answer (the source address it saw), or None when the connection
        does not get through (no route, dropped, refused). The route is checked first:
        it must go out of ``eth0``, the node's bridge, and nowhere else."""
        from tests.security.hostile_net import socket_in

        route = self.route(echo.address)
        assert route == "" or " dev eth0 " in f"{route} ", route
        sock = socket_in(self.ns, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((echo.address, echo.port))
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            return data.decode().removeprefix("from ").strip()
        except OSError:
            return None
        finally:
            sock.close()


@dataclass
class EgressLab:
    tag: str
    node: str
    outside: str
    lan: str
    network: NodeNetwork
    vms: list[Vm] = field(default_factory=list)
    echoes: list[Echo] = field(default_factory=list)

    @property
    def uplink(self) -> str:
        return f"qvdeu{self.tag}"

    def rules(self, *, deny: tuple[str, ...] | None = None) -> EgressRules:
        nets = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16") if deny is None else deny
        return EgressRules(
            uplink=self.uplink,
            gateway=NODE_ADDRESS,
            deny=tuple(ipaddress.IPv4Network(n) for n in nets),
        )

    def ensure(self, egress: EgressRules | None) -> None:
        """Set the node's network up (again) with or without egress, as the HKD does."""
        self.network = NodeNetwork(
            bridge=self.network.bridge, host_address=NODE_ADDRESS, network=VM_NET,
            ip_start=VM_NET.network_address + 100, vma_port=3030, x_port=4100, egress=egress,
        )  # fmt: skip
        in_netns(self.node, self.network.ensure)

    def ports(self) -> PortFilter:
        return PortFilter(self.network.table)

    def egress(self) -> EgressFilter:
        return EgressFilter(self.network.table)

    def admit(self, vm: Vm, *, out: bool) -> None:
        """The HKD's admission of a VM's port, with its egress decision."""

        def admit() -> None:
            self.ports().admit(Port(vm.device, vm.mac, vm.address))
            self.egress().admit(vm.device, vm.address, out=out)

        in_netns(self.node, admit)

    def release(self, vm: Vm) -> None:
        def release() -> None:
            self.egress().release(vm.device)
            self.ports().release(vm.device)

        in_netns(self.node, release)

    def add_vm(self, n: int, *, out: bool) -> Vm:
        address = str(VM_NET.network_address + 100 + n)
        mac = "54:52:00:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed[1:])
        tag = secrets.token_hex(3)
        vm = Vm(ns=f"qvde-vm-{tag}", device=f"qvdev{tag}", mac=mac, address=address)
        _run("ip", "netns", "add", vm.ns)
        self.vms.append(vm)
        self.admit(vm, out=out)  # before the port exists: never unfiltered
        _run("ip", "-n", self.node, "link", "add", vm.device, "type", "veth",
             "peer", "name", "eth0", "netns", vm.ns)  # fmt: skip
        run_in(vm.ns, "ip", "link", "set", "eth0", "address", mac)
        run_in(vm.ns, "ip", "addr", "add", f"{address}/{VM_NET.prefixlen}", "dev", "eth0")
        run_in(vm.ns, "ip", "link", "set", "lo", "up")
        run_in(vm.ns, "ip", "link", "set", "eth0", "up")
        _run("ip", "-n", self.node, "link", "set", vm.device, "master", self.network.bridge, "up")
        self.admit(vm, out=out)
        return vm

    def echo(self, where: str, address: str) -> Echo:
        made = Echo(where, address)
        self.echoes.append(made)
        return made

    def in_node(self, fn: Callable[[], T]) -> T:
        return in_netns(self.node, fn)

    def nft(self) -> str:
        return _run("ip", "netns", "exec", self.node, "nft", "list", "table", "inet",
                    self.network.table)  # fmt: skip

    def forwarding(self) -> str:
        return run_in(self.node, "cat", "/proc/sys/net/ipv4/ip_forward").strip()


@contextlib.contextmanager
def egress_lab() -> Iterator[EgressLab]:
    tag = secrets.token_hex(3)
    node, outside, lan = f"qvde-node-{tag}", f"qvde-out-{tag}", f"qvde-lan-{tag}"
    lab = EgressLab(
        tag=tag, node=node, outside=outside, lan=lan,
        network=NodeNetwork(bridge=f"qvdeb{tag}", host_address=NODE_ADDRESS, network=VM_NET,
                            ip_start=VM_NET.network_address + 100, vma_port=3030, x_port=4100),
    )  # fmt: skip
    made: list[str] = []
    try:
        for ns in (node, outside, lan):
            _run("ip", "netns", "add", ns)
            made.append(ns)
            run_in(ns, "ip", "link", "set", "lo", "up")
        # the uplink: node <-> outside; the outside holds "the Internet" behind it
        _run("ip", "-n", node, "link", "add", lab.uplink, "type", "veth",
             "peer", "name", "eth0", "netns", outside)  # fmt: skip
        run_in(node, "ip", "addr", "add", f"{UPLINK_NODE}/24", "dev", lab.uplink)
        run_in(node, "ip", "link", "set", lab.uplink, "up")
        run_in(outside, "ip", "addr", "add", f"{UPLINK_FAR}/24", "dev", "eth0")
        run_in(outside, "ip", "link", "set", "eth0", "up")
        run_in(outside, "ip", "addr", "add", f"{PUBLIC}/32", "dev", "lo")
        run_in(outside, "ip", "addr", "add", f"{PRIVATE_OUTSIDE}/32", "dev", "lo")
        run_in(node, "ip", "route", "add", "default", "via", UPLINK_FAR, "dev", lab.uplink)
        # the node's other network
        lan_dev = f"qvdel{tag}"
        _run("ip", "-n", node, "link", "add", lan_dev, "type", "veth",
             "peer", "name", "eth0", "netns", lan)  # fmt: skip
        run_in(node, "ip", "addr", "add", f"{LAN_NODE}/24", "dev", lan_dev)
        run_in(node, "ip", "link", "set", lan_dev, "up")
        run_in(lan, "ip", "addr", "add", f"{LAN_FAR}/24", "dev", "eth0")
        run_in(lan, "ip", "link", "set", "eth0", "up")
        # answers from the outside and the LAN find their way back to the node only
        run_in(lan, "ip", "route", "add", "default", "via", LAN_NODE, "dev", "eth0")
        yield lab
    finally:
        for echo in lab.echoes:
            echo.close()
        for vm in lab.vms:
            subprocess.run(["ip", "netns", "del", vm.ns], capture_output=True, check=False)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
