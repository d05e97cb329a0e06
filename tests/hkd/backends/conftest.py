"""The backend kits of the contract suite, one module-scoped node per backend kind.

``KIT_OPENERS`` maps a backend name to the context manager that opens its kit (see
``kits.py``). The KVM kit is ``open_kit`` in ``tests/hkd/backends/kvm/kit.py``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from tests.hkd.backends.kits import BackendKit, open_fake_kit, open_lxc_kit
from tests.hkd.backends.kvm.kit import open_kit as open_kvm_kit

__all__ = ["KIT_OPENERS", "KIT_PARAMS", "kit"]

KitOpener = Callable[[pytest.FixtureRequest], contextlib.AbstractContextManager[BackendKit]]


KIT_OPENERS: dict[str, KitOpener] = {
    "fake": open_fake_kit,
    "lxc": open_lxc_kit,
    "kvm": open_kvm_kit,
}

_REAL = (pytest.mark.root, pytest.mark.slow)
KIT_PARAMS = [
    pytest.param("fake", id="fake"),
    pytest.param("lxc", id="lxc", marks=(pytest.mark.lxc, *_REAL)),
    # QEMU boots run under the heavy lock too, as containers do
    pytest.param("kvm", id="kvm", marks=(pytest.mark.lxc, *_REAL)),
]


@pytest.fixture(scope="module", params=KIT_PARAMS)
def kit(request: pytest.FixtureRequest) -> Iterator[BackendKit]:
    with KIT_OPENERS[request.param](request) as opened:
        yield opened
