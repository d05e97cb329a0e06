"""A tiny DHCP client for tests: DISCOVER and REQUEST sent as raw frames from a "VM"
(a network namespace on the node's bridge, ``tests.security.hostile_net.FakeVm``), the
server's answers read from a capture of its ``eth0``. No DHCP client package needed,
and nothing is configured in the namespace by it. And the server it talks to:
``dhcp_node``, a node network with the node's dnsmasq started on it."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qvd.hkd.dhcp import DhcpSettings
from qvd.hkd.dnsmasq import Dnsmasq
from tests.security.hostile_net import Capture, FakeVm, NodeNet, node_net, udp_frame

__all__ = ["DISCOVER", "REQUEST", "DhcpClient", "DhcpReply", "bootp", "dhcp_node"]

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
_COOKIE = b"\x63\x82\x53\x63"
_WANTED = bytes([1, 3, 6, 12, 15, 28, 51, 54])


def bootp(
    xid: bytes, mac: str, kind: int, *, requested: str | None = None, server: str | None = None
) -> bytes:
    """A client's BOOTREQUEST with DHCP message type ``kind``."""
    chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
    head = struct.pack("!BBBB4sHH4s4s4s4s16s", 1, 1, 6, 0, xid, 0, 0,
                       b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, chaddr)  # fmt: skip
    options = bytes([53, 1, kind, 55, len(_WANTED)]) + _WANTED
    if requested is not None:
        options += bytes([50, 4]) + ipaddress.IPv4Address(requested).packed
    if server is not None:
        options += bytes([54, 4]) + ipaddress.IPv4Address(server).packed
    return head + b"\0" * 192 + _COOKIE + options + b"\xff"


@dataclass(frozen=True)
class DhcpReply:
    kind: int
    yiaddr: str
    chaddr: str
    options: dict[int, bytes]

    def address_option(self, code: int) -> list[str]:
        raw = self.options.get(code, b"")
        return [str(ipaddress.IPv4Address(raw[i : i + 4])) for i in range(0, len(raw) - 3, 4)]

    @property
    def router(self) -> list[str]:
        return self.address_option(3)

    @property
    def dns(self) -> list[str]:
        return self.address_option(6)

    @property
    def hostname(self) -> str | None:
        raw = self.options.get(12)
        return None if raw is None else raw.decode(errors="replace")

    @property
    def lease_time(self) -> int | None:
        raw = self.options.get(51)
        return None if raw is None else int.from_bytes(raw, "big")


def parse_reply(frame: bytes, xid: bytes) -> DhcpReply | None:
    """The server's answer carried by ``frame`` to transaction ``xid``, if it is one."""
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    udp = frame[14 + ihl :]
    if struct.unpack("!H", udp[2:4])[0] != 68:
        return None
    msg = udp[8:]
    if msg[0] != 2 or msg[4:8] != xid or msg[236:240] != _COOKIE:
        return None
    options: dict[int, bytes] = {}
    i = 240
    while i < len(msg) and msg[i] != 255:
        if msg[i] == 0:
            i += 1
            continue
        code, length = msg[i], msg[i + 1]
        options[code] = msg[i + 2 : i + 2 + length]
        i += 2 + length
    kind = options.get(53, b"\0")[0]
    chaddr = ":".join(f"{b:02x}" for b in msg[28:34])
    return DhcpReply(kind, str(ipaddress.IPv4Address(msg[16:20])), chaddr, options)


class DhcpClient:
    """Asks for ``mac``'s address from inside ``vm`` (its eth0)."""

    def __init__(self, vm: FakeVm, mac: str | None = None) -> None:
        self.vm = vm
        self.mac = mac or vm.mac
        self.capture: Capture = vm.capture()

    def close(self) -> None:
        self.capture.close()

    def _ask(self, kind: int, timeout: float, **fields: str | None) -> DhcpReply | None:
        xid = secrets.token_bytes(4)
        frame = udp_frame(src_mac=self.vm.mac, dst_mac="ff:ff:ff:ff:ff:ff", src="0.0.0.0",  # noqa: S104
                          dst="255.255.255.255", sport=68, dport=67,
                          payload=bootp(xid, self.mac, kind, **fields))  # fmt: skip
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_send:  # clients retransmit; so do we
                self.vm.send(frame)
                next_send = time.monotonic() + 1.0
            self.capture.wait(xid, timeout=0.2)
            for seen in list(self.capture.frames):
                reply = parse_reply(seen, xid)
                if reply is not None:
                    return reply
        return None

    def discover(self, timeout: float = 10.0) -> DhcpReply | None:
        """The OFFER to a DISCOVER, or None if none came within ``timeout``."""
        return self._ask(DISCOVER, timeout)

    def request(self, offer: DhcpReply, timeout: float = 10.0) -> DhcpReply | None:
        """The ACK (or NAK) to a REQUEST of what ``offer`` offered."""
        server = offer.address_option(54)
        return self._ask(
            REQUEST, timeout, requested=offer.yiaddr, server=server[0] if server else None
        )

    def lease(self, timeout: float = 10.0) -> DhcpReply | None:
        """DISCOVER then REQUEST: the ACK, or None if no offer came."""
        offer = self.discover(timeout)
        if offer is None:
            return None
        return self.request(offer, timeout)


@contextlib.contextmanager
def dhcp_node(
    run: Path, *, dns: bool = False, dns_servers: tuple[str, ...] = ()
) -> Iterator[tuple[NodeNet, Dnsmasq]]:
    """A node network (with the DHCP/DNS holes of its firewall) and a started dnsmasq on
    it, its files in ``run``/<bridge>; both removed at the end."""
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(node_net(dhcp=True, dns=dns))
        server = Dnsmasq(
            DhcpSettings(
                enabled=True, bridge=net.bridge, server_address=net.node_address,
                network=net.network.network, lease_time=600, dns=dns, dns_servers=dns_servers,
                run_dir=run / net.bridge,
            )
        )  # fmt: skip
        stack.callback(server.stop)
        server.start()
        yield net, server
