"""The client side of the connect protocol: progress then the switch."""

from __future__ import annotations

from qvd.client.protocol import ClientError, ClientProtocol, Progress, Switched, basic_auth


def test_protocol_sees_progress_then_switch() -> None:
    proto = ClientProtocol("h:1", basic_auth("a", "b"))
    request = proto.connect_request(10, {"qvd.client.keyboard": "pc105/us"})
    assert request.startswith(
        b"GET /qvd/connect_to_vm?id=10&qvd.client.keyboard=pc105/us HTTP/1.1\r\n"
    )
    assert b"Upgrade: QVD/1.0\r\n" in request
    proto.receive_data(
        b"HTTP/1.1 102 Processing\r\nX-QVD-VM-Info: Starting virtual machine\r\n\r\n"
        b"HTTP/1.1 101 Switching Protocols\r\nX-QVD-Slave-Key: K\r\n\r\nNXPROXY-"
    )
    assert proto.next_event() == Progress("Starting virtual machine")
    assert proto.next_event() == Switched(slave_key="K", trailing=b"NXPROXY-")
    other = ClientProtocol("h:1", basic_auth("a", "b"))
    other.list_request()
    other.receive_data(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
    event = other.next_event()
    assert isinstance(event, ClientError)
    assert event.status == 503
