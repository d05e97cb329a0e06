"""End-to-end fixtures: the real-node fixtures of the HKD tests, and that node's HKD
hosting the L7R (tests/e2e/node.py)."""

from tests.e2e.node import node
from tests.hkd.conftest import lxc_node, lxc_storage, run_dir, test_image

__all__ = ["lxc_node", "lxc_storage", "node", "run_dir", "test_image"]
