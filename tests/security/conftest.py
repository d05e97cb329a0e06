"""Security fixtures: the real-node fixtures of the HKD tests (real LXC, a private
bridge, the `test` image)."""

from tests.hkd.conftest import lxc_node, lxc_storage, run_dir, test_image

__all__ = ["lxc_node", "lxc_storage", "run_dir", "test_image"]
