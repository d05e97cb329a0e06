"""Name servers of a desktop that may go out: the LXC backend's ``prepare`` writes them
into the VM's upper as ``/etc/resolv.conf`` (world-readable, owned by the VM's mapped
root, never through a link the desktop left); a VM without them keeps its image's file."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.hkd.backends.base import TerminalBackendError, VmSpec
from qvd.hkd.backends.lxc import LxcBackend
from tests.hkd.backends.lxc.test_upper_bound import DI_ID, VM_ID, _spec
from tests.hkd.backends.lxc.test_upper_bound import backend as backend


def _with_dns(spec: VmSpec, *servers: str) -> VmSpec:
    return dataclasses.replace(
        spec, network=dataclasses.replace(spec.network, gateway="10.213.251.1", dns=servers)
    )


def _resolv(backend: LxcBackend) -> Path:
    return backend.layout.upper(DI_ID, VM_ID) / "etc/resolv.conf"


@pytest.fixture
def cleaned(backend: LxcBackend) -> Iterator[LxcBackend]:
    yield backend
    backend.cleanup(VM_ID)


def test_dns_servers_become_the_desktops_resolv_conf(cleaned: LxcBackend) -> None:
    backend = cleaned
    backend.prepare(_with_dns(_spec(backend, size=64), "10.213.251.1"))
    resolv = _resolv(backend)
    lines = [line for line in resolv.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["nameserver 10.213.251.1"]
    st = resolv.lstat()
    assert st.st_mode & 0o777 == 0o644  # every user of the desktop resolves names
    ids = backend.ids.for_vm(VM_ID)
    assert (st.st_uid, st.st_gid) == (ids.start, ids.start)


def test_no_dns_leaves_the_image_file(cleaned: LxcBackend) -> None:
    backend = cleaned
    backend.prepare(_spec(backend, size=64))
    assert not _resolv(backend).exists()  # the image's own (lower) file shows through


def test_a_link_left_in_a_kept_upper_is_replaced_not_followed(
    cleaned: LxcBackend, tmp_path: Path
) -> None:
    backend = cleaned
    spec = _with_dns(_spec(backend, size=64, persistent=True), "10.213.251.1")
    backend.prepare(spec)
    victim = tmp_path / "node-file"
    victim.write_text("node\n")
    resolv = _resolv(backend)
    resolv.unlink()
    os.symlink(victim, resolv)  # what root in a desktop with a persistent root could do
    backend.prepare(spec)
    assert victim.read_text() == "node\n"
    assert not resolv.is_symlink()
    assert "nameserver 10.213.251.1" in resolv.read_text()


def test_a_name_server_that_is_not_an_address_is_refused(cleaned: LxcBackend) -> None:
    backend = cleaned
    with pytest.raises(TerminalBackendError, match="bad name server"):
        backend.prepare(_with_dns(_spec(backend, size=64), "10.0.0.1\nnameserver 6.6.6.6"))
