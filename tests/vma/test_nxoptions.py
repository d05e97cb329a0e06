"""The pure parts of a session: nxagent options and the X authority file."""

from __future__ import annotations

import struct

from qvd.vma.nxoptions import agent_options, xauthority_entries


def test_agent_options_from_client_properties() -> None:
    line = agent_options(
        {
            "qvd.client.keyboard": "pc105/es",
            "qvd.client.os": "linux",
            "qvd.client.geometry": "1024x768",
            "qvd.client.fullscreen": "0",
            "qvd.client.link": "bad value;rm",
        },
        display=100,
        cookie="ab" * 16,
        accept="10.0.0.1",
    )
    assert line == (
        "nx/nx,link=adsl,keyboard=pc105/es,client=linux,geometry=1024x768,"
        "tolerancechecks=risky,listen=4100,accept=10.0.0.1,cookie=" + "ab" * 16 + ":100"
    )


def test_extra_args_cannot_open_the_agent_port() -> None:
    line = agent_options(
        {"qvd.client.nxagent.extra_args": "accept=0.0.0.0,cookie=x,listen=1,dpi=96"},
        display=100,
        cookie="cd" * 16,
        accept="",
    )
    assert "dpi=96" in line
    assert "accept=" not in line
    assert line.count("cookie=") == 1
    assert "listen=4100" in line


def test_xauthority_file_format() -> None:
    data = xauthority_entries(100, "00ff" * 8, hostname="vm1")
    (family,) = struct.unpack(">H", data[:2])
    assert family == 256
    offset = 2
    fields = []
    for _ in range(4):
        (length,) = struct.unpack(">H", data[offset : offset + 2])
        fields.append(data[offset + 2 : offset + 2 + length])
        offset += 2 + length
    assert fields == [b"vm1", b"100", b"MIT-MAGIC-COOKIE-1", bytes.fromhex("00ff" * 8)]
    assert data[offset : offset + 2] == b"\xff\xff"  # then a FamilyWild entry
