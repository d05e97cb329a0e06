"""The RFB handshakes of qvd.l7r.rfb, in memory, byte by byte and in one chunk."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from qvd.l7r.rfb import (
    MAX_REASON,
    RFB_38,
    AuthenticationFailed,
    BrowserGreeting,
    RfbError,
    VncAuthClient,
    vnc_auth_response,
)

CHALLENGE = bytes(range(16))
OK = struct.pack(">I", 0)
FAILED = struct.pack(">I", 1)


def _reason(text: bytes) -> bytes:
    return struct.pack(">I", len(text)) + text


def _feed(machine: VncAuthClient | BrowserGreeting, data: bytes, bytewise: bool) -> bytes:
    if not bytewise:
        return machine.feed(data)
    out = b""
    for i in range(len(data)):
        out += machine.feed(data[i : i + 1])
        if machine.done:
            # whatever follows the handshake is the next phase's: hand it in as leftover
            rest = data[i + 1 :]
            machine.leftover += rest
            break
    return out


def _server_decrypt(password: bytes, response: bytes) -> bytes:
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in password.ljust(8, b"\0")[:8])
    decryptor = Cipher(TripleDES(key * 3), modes.ECB()).decryptor()  # noqa: S305
    return decryptor.update(response) + decryptor.finalize()


BYTEWISE = pytest.mark.parametrize("bytewise", [False, True], ids=["chunk", "bytewise"])


@BYTEWISE
def test_client_rfb38_vnc_auth_ends_before_client_init(bytewise: bool) -> None:
    client = VncAuthClient("s3cr3tpw")
    sent = _feed(client, RFB_38, bytewise)
    assert sent == RFB_38
    sent = _feed(client, bytes([2, 1, 2]), bytewise)  # None and VNC offered
    assert sent == bytes([2])
    response = _feed(client, CHALLENGE, bytewise)
    assert len(response) == 16
    assert _server_decrypt(b"s3cr3tpw", response) == CHALLENGE
    assert not client.done
    _feed(client, OK + b"\x00\x01extra", bytewise)
    assert client.done
    assert client.leftover == b"\x00\x01extra"


@BYTEWISE
def test_client_early_announces_38_first_and_does_not_repeat_it(bytewise: bool) -> None:
    """``early``: the version goes out before the server's (libvncserver greets a client
    that spoke first at once, instead of after its 100 ms WebSocket/TLS probe)."""
    client = VncAuthClient("s3cr3tpw", early=True)
    assert client.initial() == RFB_38
    assert _feed(client, RFB_38, bytewise) == b""  # already said
    assert _feed(client, bytes([1, 2]), bytewise) == bytes([2])
    assert _server_decrypt(b"s3cr3tpw", _feed(client, CHALLENGE, bytewise)) == CHALLENGE
    _feed(client, OK, bytewise)
    assert client.done
    assert client.minor == 8


def test_client_not_early_says_nothing_first() -> None:
    assert VncAuthClient("pw").initial() == b""


@pytest.mark.parametrize("version", [b"RFB 003.003\n", b"RFB 003.007\n"])
def test_client_early_refuses_an_older_server(version: bytes) -> None:
    """3.8 was announced already: a server that speaks 3.3 or 3.7 cannot be answered."""
    client = VncAuthClient("pw", early=True)
    with pytest.raises(RfbError, match=r"speaks RFB 3\.[37]; the L7R announced 3\.8"):
        client.feed(version)


def test_client_whole_server_greeting_in_one_chunk() -> None:
    client = VncAuthClient("pw")
    # a server that sends its version and types at once (they may arrive together)
    assert client.feed(RFB_38 + bytes([1, 2])) == RFB_38 + bytes([2])
    assert len(client.feed(CHALLENGE)) == 16
    assert client.feed(OK) == b""
    assert client.done
    assert client.leftover == b""


@BYTEWISE
def test_client_rfb33_server_picks_vnc_auth(bytewise: bool) -> None:
    client = VncAuthClient("abc")
    assert _feed(client, b"RFB 003.003\n", bytewise) == b"RFB 003.003\n"
    assert _feed(client, struct.pack(">I", 2), bytewise) == b""
    assert _server_decrypt(b"abc", _feed(client, CHALLENGE, bytewise)) == CHALLENGE
    _feed(client, OK, bytewise)
    assert client.done
    assert client.minor == 3


@BYTEWISE
def test_client_rfb37_wrong_password_has_no_reason(bytewise: bool) -> None:
    client = VncAuthClient("wrong")
    assert _feed(client, b"RFB 003.007\n", bytewise) == b"RFB 003.007\n"
    _feed(client, bytes([1, 2]) + CHALLENGE, bytewise)
    with pytest.raises(AuthenticationFailed, match="refused the password"):
        _feed(client, FAILED, bytewise)


@BYTEWISE
def test_client_rfb38_wrong_password_reports_reason(bytewise: bool) -> None:
    client = VncAuthClient("wrong")
    _feed(client, RFB_38 + bytes([1, 2]) + CHALLENGE, bytewise)
    with pytest.raises(AuthenticationFailed, match="password check failed"):
        _feed(client, FAILED + _reason(b"password check failed!"), bytewise)


def test_client_newer_server_version_speaks_38() -> None:
    client = VncAuthClient("pw")
    assert client.feed(b"RFB 003.889\n") == RFB_38
    assert client.feed(b"RFB 004.001\n"[:0]) == b""


@BYTEWISE
def test_client_refuses_server_without_vnc_auth(bytewise: bool) -> None:
    client = VncAuthClient("pw")
    _feed(client, RFB_38, bytewise)
    with pytest.raises(RfbError, match="no VNC authentication"):
        _feed(client, bytes([2, 1, 16]), bytewise)


def test_client_refuses_rfb33_none() -> None:
    client = VncAuthClient("pw")
    client.feed(b"RFB 003.003\n")
    with pytest.raises(RfbError, match="not VNC auth"):
        client.feed(struct.pack(">I", 1))


@BYTEWISE
def test_client_server_refusal_reason(bytewise: bool) -> None:
    client = VncAuthClient("pw")
    _feed(client, RFB_38, bytewise)
    with pytest.raises(RfbError, match="too many connections"):
        _feed(client, b"\x00" + _reason(b"too many connections"), bytewise)


@pytest.mark.parametrize(
    "garbage",
    [b"HTTP/1.1 200 \n", b"RFB 3.8\n\n\n\n\n", b"RFB 002.000\n", b"rfb 003.008\n", b"\0" * 12],
)
def test_client_refuses_garbage_version(garbage: bytes) -> None:
    with pytest.raises(RfbError):
        VncAuthClient("pw").feed(garbage)


@pytest.mark.parametrize(
    "tail",
    [
        lambda: b"\x00" + struct.pack(">I", MAX_REASON + 1),  # refusal of the types
        lambda: bytes([1, 2]) + CHALLENGE + FAILED + struct.pack(">I", 0xFFFFFFFF),
    ],
    ids=["types-refused", "auth-failed"],
)
def test_client_refuses_oversized_reason_before_reading_it(tail: Callable[[], bytes]) -> None:
    client = VncAuthClient("pw")
    client.feed(RFB_38)
    with pytest.raises(RfbError, match="too long"):
        client.feed(tail())  # the length alone is enough: no 4 GiB buffered


def test_client_password_rules() -> None:
    for bad in ("", "123456789", "pässwort"):
        with pytest.raises(ValueError, match="1 to 8 ASCII"):
            VncAuthClient(bad)


def test_client_refuses_bytes_after_done() -> None:
    client = VncAuthClient("pw")
    client.feed(RFB_38 + bytes([1, 2]) + CHALLENGE + OK)
    with pytest.raises(RfbError):
        client.feed(b"x")


def test_vnc_auth_response_uses_first_eight_bytes_and_checks_challenge() -> None:
    assert vnc_auth_response("12345678", CHALLENGE) != vnc_auth_response("12345679", CHALLENGE)
    assert vnc_auth_response("ab", CHALLENGE) == vnc_auth_response("ab\0", CHALLENGE)
    with pytest.raises(RfbError):
        vnc_auth_response("pw", b"short")


# --- the browser side ------------------------------------------------------------


@BYTEWISE
def test_browser_rfb38_none_then_client_init_is_leftover(bytewise: bool) -> None:
    greeting = BrowserGreeting()
    assert greeting.initial() == RFB_38
    assert _feed(greeting, RFB_38, bytewise) == bytes([1, 1])
    assert _feed(greeting, bytes([1]) + b"\x01", bytewise) == OK
    assert greeting.done
    assert greeting.leftover == b"\x01"  # ClientInit (shared flag) sent early


def test_browser_one_chunk() -> None:
    greeting = BrowserGreeting()
    assert greeting.feed(RFB_38 + bytes([1])) == bytes([1, 1]) + OK
    assert greeting.done
    assert greeting.leftover == b""


def test_browser_rfb37_has_no_security_result() -> None:
    greeting = BrowserGreeting()
    assert greeting.feed(b"RFB 003.007\n") == bytes([1, 1])
    assert greeting.feed(bytes([1])) == b""
    assert greeting.done


def test_browser_rfb33_server_picks_none() -> None:
    greeting = BrowserGreeting()
    assert greeting.feed(b"RFB 003.003\n\x01") == struct.pack(">I", 1)
    assert greeting.done
    assert greeting.leftover == b"\x01"


def test_browser_refuses_another_security_type() -> None:
    greeting = BrowserGreeting()
    greeting.feed(RFB_38)
    with pytest.raises(RfbError, match="only None"):
        greeting.feed(bytes([2]))


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n", b"RFB 004.000\n", b"RFB 003.0x8\n"])
def test_browser_refuses_garbage_version(garbage: bytes) -> None:
    with pytest.raises(RfbError):
        BrowserGreeting().feed(garbage)
