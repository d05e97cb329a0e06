"""The client tests use the L7R tests' loopback L7R (``lab``)."""

from __future__ import annotations

from tests.l7r.conftest import lab as _l7r_lab

__all__ = ["lab"]

lab = _l7r_lab
