"""A TCP proxy in front of PostgreSQL that loses one COMMIT's answer.

What a failover can do to a transaction at the worst moment: the server commits, and
the client never hears so (the primary died between its commit and its reply, and a
synchronous standby has the commit). :class:`AckLossProxy` relays a loopback
connection to the real server byte for byte; once a client has sent a statement
containing ``marker`` after :meth:`arm`, the server's answer to that connection's
next ``COMMIT`` is swallowed and both sockets are closed: the transaction is committed
on the server and the client sees its connection lost during COMMIT. One shot.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["AckLossProxy"]


class AckLossProxy:
    def __init__(self, upstream_port: int, marker: bytes) -> None:
        self.upstream_port = upstream_port
        self.marker = marker
        self.fired = threading.Event()  # a COMMIT's answer was swallowed
        self._armed = False
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="ackloss", daemon=True)
        self._thread.start()

    def arm(self) -> None:
        with self._lock:
            self._armed = True

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(5)

    def __enter__(self) -> AckLossProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, server]
            state = {"marked": False, "swallow": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(client, server, state), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, state: dict[str, bool]) -> None:
        """Client → server; marks the connection, then arms on its next COMMIT."""
        try:
            while data := client.recv(65536):
                with self._lock:
                    if self._armed and self.marker in data:
                        state["marked"] = True
                    if state["marked"] and self._armed and b"COMMIT" in data:
                        self._armed = False
                        state["swallow"] = True
                server.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)

    def _down(self, client: socket.socket, server: socket.socket, state: dict[str, bool]) -> None:
        """Server → client; the armed connection's next answer (COMMIT's) is lost."""
        try:
            while data := server.recv(65536):
                if state["swallow"]:
                    self.fired.set()
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            # shutdown first: it sends the FIN now, though the other pump still reads
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
