"""The nxagent options line and the X authority file (pure builders, no I/O).

``agent_options`` maps the client properties onto nxagent options as QVD does
(keyboard, client, link, geometry, fullscreen; values must match ``[\\w/+-]+``) and
adds the side channels' options (``qvd.vma.channels``), ``listen=<4000+display>``,
``accept=<tunnel address>`` and ``cookie=<cookie>``. Extra options from
``qvd.client.nxagent.extra_args`` can never override listen, accept, cookie or connect,
nor open a side channel.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Mapping, Sequence

from qvd.vma.channels import CHANNEL_OPTIONS

__all__ = ["PROTECTED_OPTIONS", "agent_options", "xauthority_entries"]

_VALUE = re.compile(r"^[\w/+\-.]+$")
_OPTION_OF_PROPERTY = (
    ("qvd.client.keyboard", "keyboard"),
    ("qvd.client.os", "client"),
    ("qvd.client.link", "link"),
    ("qvd.client.geometry", "geometry"),
    ("qvd.client.fullscreen", "fullscreen"),
)
# the tunnel's own options and the side channels (``qvd.vma.channels`` decides those)
PROTECTED_OPTIONS = (
    frozenset({"listen", "accept", "cookie", "connect", "port", "options"}) | CHANNEL_OPTIONS
)


def agent_options(
    params: Mapping[str, str],
    *,
    display: int,
    cookie: str,
    accept: str,
    extra: str = "",
    channels: Sequence[str] = (),
) -> str:
    """The ``nx/nx,…:<display>`` line nxagent reads from its options file."""
    options: list[str] = []
    values = {"link": "adsl"}
    for prop, option in _OPTION_OF_PROPERTY:
        value = params.get(prop, "").strip()
        if value and _VALUE.match(value):
            values[option] = value
    if values.get("fullscreen") in ("0", "false"):
        values.pop("fullscreen")
    options += [f"{k}={v}" for k, v in values.items()]
    options.append("tolerancechecks=risky")
    for token in " ".join((extra, params.get("qvd.client.nxagent.extra_args", ""))).split(","):
        key, sep, value = token.strip().partition("=")
        allowed = sep and key and key not in PROTECTED_OPTIONS and key not in values
        if allowed and _VALUE.match(key) and _VALUE.match(value):
            options.append(f"{key}={value}")
    options += channels  # from ChannelPlan.agent_options
    options.append(f"listen={4000 + display}")
    if accept:
        options.append(f"accept={accept}")
    options.append(f"cookie={cookie}")
    return f"nx/nx,{','.join(options)}:{display}"


def _entry(family: int, address: bytes, number: bytes, name: bytes, data: bytes) -> bytes:
    out = struct.pack(">H", family)
    for field in (address, number, name, data):
        out += struct.pack(">H", len(field)) + field
    return out


def xauthority_entries(display: int, cookie_hex: str, hostname: str | None = None) -> bytes:
    """An ``.Xauthority`` file granting MIT-MAGIC-COOKIE-1 ``cookie_hex`` on ``:display``.

    Two entries: FamilyLocal for this host name and FamilyWild (any address).
    """
    host = (hostname or socket.gethostname()).encode()
    number = str(display).encode()
    name = b"MIT-MAGIC-COOKIE-1"
    data = bytes.fromhex(cookie_hex)
    return _entry(256, host, number, name, data) + _entry(0xFFFF, b"", number, name, data)
