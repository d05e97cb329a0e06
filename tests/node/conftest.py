"""Node fixtures: the real-node fixtures of the HKD tests (LXC storage, the `test` image)."""

from tests.hkd.conftest import lxc_storage, run_dir, test_image

__all__ = ["lxc_storage", "run_dir", "test_image"]
