"""Security fixtures: the real-node fixtures of the HKD tests (real LXC, a private
bridge, the `test` image), and a machine on a private network."""

from collections.abc import Iterator

import pytest

from qvd.di.testbed import Bridge, NetnsPeer
from tests.hkd.conftest import lxc_node, lxc_storage, run_dir, test_image

__all__ = ["lxc_node", "lxc_storage", "network", "run_dir", "test_image"]


@pytest.fixture
def network(root_only: None) -> Iterator[tuple[Bridge, NetnsPeer]]:
    """A bridge this test makes and another machine on it (a network namespace at .200)."""
    bridge = Bridge()
    try:
        peer = NetnsPeer(bridge, 200)
        try:
            yield bridge, peer
        finally:
            peer.close()
    finally:
        bridge.close()
