"""Hypervisor backends behind one interface; ``load_backend`` picks one by name.

Outside this package nothing names a backend: the HKD asks for ``vm.hypervisor``'s
backend here and uses the interface of ``base``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from qvd.hkd.backends.base import (
    Backend,
    BackendError,
    Capabilities,
    HomeSpec,
    NetworkSpec,
    TerminalBackendError,
    VmSpec,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "Capabilities",
    "HomeSpec",
    "NetworkSpec",
    "TerminalBackendError",
    "UnknownBackend",
    "VmSpec",
    "load_backend",
]

# name -> "module:factory"; load_backend calls the factory with its keyword arguments
# (the daemon passes ``config=``, the node's Config) and checks it made a Backend.
# "fake" is for tests, which hand a FakeBackend to the daemon directly.
BACKENDS: dict[str, str] = {
    "fake": "qvd.hkd.backends.fake:from_config",
    "kvm": "qvd.hkd.backends.kvm:KvmBackend",
    "lxc": "qvd.hkd.backends.lxc:LxcBackend",
}


class UnknownBackend(Exception):
    """``vm.hypervisor`` names no backend this software has."""


def load_backend(name: str, **settings: object) -> Backend:
    """The backend called ``name``, made by its factory from ``settings`` (the HKD
    passes ``config=``, the node's configuration)."""
    target = BACKENDS.get(name)
    if target is None:
        known = ", ".join(sorted(b for b in BACKENDS if b != "fake"))
        raise UnknownBackend(f"vm.hypervisor = {name!r} is not a known backend ({known})")
    module_name, _, factory_name = target.partition(":")
    factory: Callable[..., Backend] = getattr(importlib.import_module(module_name), factory_name)
    backend = factory(**settings)
    if not isinstance(backend, Backend):  # pragma: no cover - programming error
        raise TypeError(f"{target} did not make a Backend")
    return backend
