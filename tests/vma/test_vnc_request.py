"""The pure part of vnc_connect: what a request must hold, what each state allows,
and the command lines (no processes)."""

from __future__ import annotations

import pytest

from qvd.vma.vnc import (
    MAX_NOTICE,
    VncRefused,
    check_state,
    nxproxy_argv,
    parse_vnc_request,
    x11vnc_argv,
    xmessage_argv,
)

GOOD = {
    "connection": "keep-alive, Upgrade",
    "upgrade": "vnc",
    "x-qvd-vnc-password": "Ab3$Ab3$",
}


def refused(params: dict[str, str], headers: dict[str, str]) -> VncRefused:
    with pytest.raises(VncRefused) as caught:
        parse_vnc_request(params, headers)
    return caught.value


def test_a_good_request() -> None:
    request = parse_vnc_request({"view_only": "1", "attach": "0"}, GOOD)
    assert request.view_only
    assert not request.attach
    assert request.password == "Ab3$Ab3$"
    assert request.notice == ""
    assert "Ab3$" not in repr(request)


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"connection": "keep-alive"}, 426, "Connection: Upgrade"),
        ({"upgrade": "websocket"}, 426, "Upgrade: VNC"),
        ({"x-qvd-vnc-password": ""}, 400, "X-QVD-VNC-Password"),
        ({"x-qvd-vnc-password": "1234567"}, 400, "8 printable"),
        ({"x-qvd-vnc-password": "123456789"}, 400, "8 printable"),
        ({"x-qvd-vnc-password": "1234 678"}, 400, "8 printable"),
        ({"x-qvd-vnc-password": "1234567é"}, 400, "8 printable"),
        ({"x-qvd-spy-notice": "x" * (MAX_NOTICE + 1)}, 400, "200"),
        ({"x-qvd-spy-notice": "line\nbreak"}, 400, "printable"),
        ({"x-qvd-spy-notice": "bell\x07"}, 400, "printable"),
    ],
)
def test_bad_headers(change: dict[str, str], status: int, reason: str) -> None:
    error = refused({}, {**GOOD, **change})
    assert error.status == status
    assert reason in error.reason


@pytest.mark.parametrize("name", ["view_only", "attach"])
def test_flags_are_0_or_1(name: str) -> None:
    error = refused({name: "true"}, GOOD)
    assert error.status == 400
    assert name in error.reason


@pytest.mark.parametrize(
    ("attach", "allowed"),
    [(False, {"connected", "suspended"}), (True, {"listening", "suspended"})],
)
def test_states(attach: bool, allowed: set[str]) -> None:
    request = parse_vnc_request({"attach": str(int(attach))}, GOOD)
    states = {
        "stopped",
        "provisioning",
        "starting",
        "listening",
        "connected",
        "suspending",
        "suspended",
        "stopping",
    }
    for state in states:
        if state in allowed:
            check_state(request, state)
        else:
            with pytest.raises(VncRefused, match=state) as caught:
                check_state(request, state)
            assert caught.value.status == 409


def test_x11vnc_serves_stdin_with_a_password_file_and_no_port() -> None:
    argv = x11vnc_argv(
        "/usr/bin/x11vnc",
        display=100,
        xauthority="/home/a/.Xauthority",
        password_file="/home/a/.nx/p",
        view_only=True,
        extra=["-noshm"],
    )
    assert argv[:4] == ["/usr/bin/x11vnc", "-inetd", "-display", ":100"]
    assert "rm:/home/a/.nx/p" in argv
    assert "-viewonly" in argv
    assert "-once" in argv
    assert "-rfbport" not in argv
    assert argv[-1] == "-noshm"
    interactive = x11vnc_argv(
        "x11vnc", display=1, xauthority="x", password_file="p", view_only=False, extra=[]
    )
    assert "-viewonly" not in interactive


def test_viewer_connects_to_loopback_and_notice_reads_stdin() -> None:
    assert nxproxy_argv("nxproxy", port=4100, cookie="c0ffee", display=100) == [
        "nxproxy",
        "-S",
        "nx/nx,link=lan,connect=127.0.0.1,port=4100,cookie=c0ffee:100",
    ]
    assert xmessage_argv("xmessage")[-2:] == ["-file", "-"]
