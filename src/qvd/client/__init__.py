"""``qvd-client``: list a user's desktops and connect to one through the L7R.

``protocol`` is the pure HTTP side (h11), ``settings`` the remembered host and user,
``main`` the CLI with the TLS socket, the local ``nxproxy -S`` and the relay. The
names below are those of ``protocol``, imported on first use (the client's start-up
does not pay for what it does not need yet).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClientError", "ClientProtocol", "Progress", "Switched", "VmList"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from qvd.client import protocol

        return getattr(protocol, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
