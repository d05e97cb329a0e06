"""Fixtures of the KVM backend's tests: a throwaway node (``kvm_node``) whose VMs are
stub guests under real QEMU (TCG)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hkd.backends.kvm.node import KvmNode, kvm_node_made


@pytest.fixture
def kvm_node(root_only: None) -> Iterator[KvmNode]:
    with kvm_node_made() as node:
        yield node
