"""Attack: a hostile client's "CUPS" answers the desktop's printer query a byte at a time,
forever (each byte in time for the per-read timeout), to hold the VMA's device thread —
every later device event of the session (suspend, stop, the other devices) waits behind
it. The whole query has a deadline: ``connected`` returns, with no queue, and the
desktop's real cupsd is untouched."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from qvd.vma.printing import Printing
from tests.cupsd import PrivateCupsd
from tests.vma.helpers import printing_context


class DrippingCups:
    """Reads a request, then sends an HTTP head and body one byte every 0.2 s."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)  # accept() wakes up to see ``stop``
        self.port = int(self.listener.getsockname()[1])
        self.stop = threading.Event()
        self.dripped = 0
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            worker = threading.Thread(target=self._drip, args=(conn,), daemon=True)
            self.threads.append(worker)
            worker.start()

    def _drip(self, conn: socket.socket) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: 9999\r\n\r\n"
        with conn:
            conn.recv(65536)
            for index in range(10**6):
                if self.stop.wait(0.2):
                    return
                try:
                    conn.sendall(answer[index : index + 1] or b"\x02")
                except OSError:
                    return  # the desktop gave up
                self.dripped += 1

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(10)


def test_a_client_that_drips_its_answer_does_not_hold_the_device(tmp_path: Path) -> None:
    hostile = DrippingCups()
    desktop = PrivateCupsd()
    try:
        ctx = printing_context(desktop.server, hostile.port - 2000, tmp_path)
        device = Printing()
        call = threading.Thread(target=device.connected, args=(ctx,), daemon=True)
        call.start()
        call.join(120)  # generous: the guard ends it after its deadline
        assert not call.is_alive(), "connected() is still held by the dripping client"
        assert hostile.dripped > 10  # it was dripping when the desktop gave up
        dripped = hostile.dripped
        time.sleep(1)
        assert hostile.dripped <= dripped + 1  # and the desktop hung up
        assert desktop.queues() == []
        device.stopped(ctx)
    finally:
        hostile.close()
        desktop.close()
