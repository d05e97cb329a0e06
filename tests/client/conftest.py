"""The client tests use the L7R tests' loopback L7R (``lab``) and, for real sessions,
the real-node fixtures of the HKD tests."""

from __future__ import annotations

from tests.hkd.conftest import lxc_node, lxc_storage, run_dir, test_image
from tests.l7r.conftest import lab as _l7r_lab

__all__ = ["lab", "lxc_node", "lxc_storage", "run_dir", "test_image"]

lab = _l7r_lab
