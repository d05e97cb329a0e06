"""What the API's and the user portal's uvicorn servers share (neither may import the
other): a listening socket bound before uvicorn starts, and uvicorn's wsproto
WebSocket protocol with its shutdown fixed.
"""

from __future__ import annotations

import socket

from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from wsproto.connection import ConnectionState

__all__ = ["ClosingAwareWSProtocol", "listen_tcp"]


class ClosingAwareWSProtocol(WSProtocol):
    """uvicorn's wsproto WebSocket protocol, stopping cleanly when a socket whose
    closing handshake is done still waits for its TLS shutdown: uvicorn (0.54) would
    send a 1012 close frame on the closed connection at server exit and its thread
    would die of ``LocalProtocolError`` (a browser left a page just before the server
    stopped). Such a connection is left to finish closing."""

    def shutdown(self) -> None:
        if not self.close_sent and self.conn.state is ConnectionState.CLOSED:
            self.stop_keepalive()  # nothing more to send: the transport ends as it is
            if not self.transport.is_closing():
                self.transport.close()
            return
        super().shutdown()


def listen_tcp(host: str, port: int, *, backlog: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts so that a taken port is a
    clear error (``OSError``). It says IPPROTO_TCP explicitly: asyncio turns Nagle off
    only on sockets that do, and Nagle with delayed ACKs costs keep-alive clients ~40 ms."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
