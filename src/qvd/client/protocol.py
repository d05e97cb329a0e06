"""The client side of the L7R protocol as a pure state machine over h11.

proto = ClientProtocol(host, authorization)  # basic_auth(user, pw) or bearer_auth(token)
sock.sendall(proto.list_request())           # or connect_request / stop_request
proto.receive_data(bytes)                    # b"" at EOF
event = proto.next_event()   # VmList | Done | Progress | Switched | ClientError | None
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h11

__all__ = [
    "ClientError",
    "ClientProtocol",
    "Done",
    "Progress",
    "Switched",
    "VmList",
    "basic_auth",
    "bearer_auth",
]

MESSAGES = {
    401: "Login error: wrong user name or password",
    403: "Your virtual machine is not available (forbidden)",
    404: "Your virtual machine does not exist any more",
    426: "The server requires a more up-to-date client version",
    502: "Server error",
    503: "The service is not available (under maintenance)",
}


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bearer_auth(token: str) -> str:
    """A token as the Perl client sends it: ``Bearer base64(token)``."""
    return "Bearer " + base64.b64encode(token.encode()).decode()


@dataclass(frozen=True, slots=True)
class VmList:
    vms: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Done:
    """A 200 with a text body (``stop_vm``: "Machine stopped")."""

    text: str


@dataclass(frozen=True, slots=True)
class Progress:
    info: str


@dataclass(frozen=True, slots=True)
class Switched:
    slave_key: str
    trailing: bytes


class ClientError(Exception):
    """The L7R answered with an error: ``status`` and its body."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        summary = MESSAGES.get(status, f"Unable to connect to remote VM: {status}")
        super().__init__(f"{summary} ({status}): {body.strip()}")


class ClientProtocol:
    def __init__(self, host: str, authorization: str) -> None:
        self._host = host
        self._auth = authorization
        self._h11 = h11.Connection(h11.CLIENT)
        self._status = 0
        self._body = bytearray()
        self._json = True

    def _request(
        self, target: str, extra: list[tuple[str, str]], *, expect_json: bool = True
    ) -> bytes:
        if self._h11.states == {h11.CLIENT: h11.DONE, h11.SERVER: h11.DONE}:
            self._h11.start_next_cycle()
        self._status = 0
        self._body.clear()
        self._json = expect_json
        headers = [("Host", self._host), ("Authorization", self._auth), *extra]
        out = self._h11.send(h11.Request(method="GET", target=target, headers=headers))
        return out + self._h11.send(h11.EndOfMessage())

    def list_request(self) -> bytes:
        return self._request("/qvd/list_of_vm", [("Accept", "application/json")])

    def connect_request(self, vm_id: int, params: Mapping[str, str]) -> bytes:
        query = urllib.parse.urlencode([("id", str(vm_id)), *params.items()], safe="/")
        return self._request(
            f"/qvd/connect_to_vm?{query}", [("Connection", "Upgrade"), ("Upgrade", "QVD/1.0")]
        )

    def stop_request(self, vm_id: int) -> bytes:
        """``/qvd/stop_vm?id=N`` with the upgrade headers, as the Perl client sends it."""
        return self._request(
            f"/qvd/stop_vm?id={vm_id}",
            [("Connection", "Upgrade"), ("Upgrade", "QVD/1.0")],
            expect_json=False,
        )

    def receive_data(self, data: bytes) -> None:
        self._h11.receive_data(data)

    def next_event(self) -> VmList | Done | Progress | Switched | ClientError | None:
        """The next thing the server said (None: more bytes are needed)."""
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                return ClientError(0, f"the server broke the protocol: {exc}")
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if self._h11.their_state is h11.SWITCHED_PROTOCOL:
                    return self._switched
                return None
            if isinstance(event, h11.InformationalResponse):
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                if event.status_code == 101:
                    self._switched = Switched(
                        slave_key=headers.get("x-qvd-slave-key", ""),
                        trailing=self._h11.trailing_data[0],
                    )
                    return self._switched
                return Progress(headers.get("x-qvd-vm-info", ""))
            if isinstance(event, h11.Response):
                self._status = event.status_code
            elif isinstance(event, h11.Data):
                self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                body = bytes(self._body).decode("utf-8", errors="replace")
                if self._status != 200:
                    return ClientError(self._status, body)
                if not self._json:
                    return Done(body.strip())
                try:
                    return VmList(json.loads(body))
                except ValueError:
                    return ClientError(0, f"the server sent no JSON list: {body[:80]!r}")
            elif isinstance(event, h11.ConnectionClosed):
                return ClientError(0, "the server closed the connection")

    _switched: Switched
