"""The VMA's container tests run the container a node starts: the harness is the LXC
backend itself, so its configuration is the HKD's (user namespace, seccomp, limits,
MAC formula), not a copy that can drift."""

from __future__ import annotations

from qvd.hkd.addressing import mac_for
from qvd.hkd.backends.lxc.config import SECCOMP_PROFILE
from tests.vma.helpers import StartContainer


def test_the_harness_runs_the_nodes_container(start_container: StartContainer) -> None:
    container, client = start_container()
    client.ping()  # its VMA answers (raises otherwise)
    ids = container.backend.user_namespace(container.vm_id)
    assert ids is not None  # root inside is an unprivileged host id range
    assert ids.start >= 65536
    lines = container.config_text.splitlines()
    assert f"lxc.net.0.hwaddr = {mac_for(container.address, '54:52:00')}" in lines
    assert f"lxc.seccomp.profile = {SECCOMP_PROFILE}" in lines
    assert "lxc.pty.max = 256" in lines
    assert "lxc.apparmor.profile = generated" in lines
    uid_map = container.attach("cat", "/proc/self/uid_map").stdout.split()
    assert uid_map[:2] == ["0", str(ids.start)]
