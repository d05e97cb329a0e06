"""An image whose init is systemd, in the HKD's own unprivileged container (user
namespace, no CAP_SYS_ADMIN, seccomp, cgroup v1 ``cgroup:mixed``): systemd boots as
PID 1, runs the VMA as ``qvd-vma.service``, the VMA answers the HKD and provisions a
session; ``poweroff`` and the HKD's stop both shut the container down cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.db.vmasecret import derive_vma_secret, master_secret
from qvd.hkd.backends.lxc import LxcBackend
from qvd.vma.client import VmaClient
from tests.hkd.conftest import command, lxc_node, lxc_storage, run_dir, state_of, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.security.desktops import node_hkd, run_in, start_vm
from tests.vma.helpers import wait_ping, wait_state
from tests.vma.sysimage import systemd_test_image

__all__ = ["lxc_node", "lxc_storage", "run_dir"]

pytestmark = pytest.mark.timeout(1200)  # the first run on a machine builds the image

USER = {"qvd.vm.user.name": "alice", "qvd.vm.user.uid": "23456", "qvd.client.link": "lan"}
CAP_SYS_ADMIN = 21


@pytest.fixture(scope="session")
def systemd_image() -> Path:
    return systemd_test_image()


def vm_secret(engine: Engine, vm_id: int) -> str:
    """This run's secret (HMAC of the master secret, the VM and its run number)."""
    with engine.begin() as conn:
        master = master_secret(conn)
        attempts = conn.execute(
            text("SELECT run_attempts FROM vm_counters WHERE vm_id = :v"), {"v": vm_id}
        ).scalar_one()
    return derive_vma_secret(master, vm_id, int(attempts))


def test_a_systemd_image_boots_serves_and_stops_in_the_hkd_container(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, systemd_image: Path
) -> None:
    # the HKD would kill a container that ignores the halt signal after 300 s: a stop
    # seen well before that was systemd's own halt
    with node_hkd(db, engine, lxc_node, **{"internal.hkd.timeout.shutdown": "300"}) as hkd:
        backend = hkd.backend
        assert isinstance(backend, LxcBackend)
        vm_id, _ = add_lxc_vm(engine, lxc_node, systemd_image, 1)
        start_vm(engine, hkd, vm_id)  # running: the VMA answered the HKD's ping

        init = run_in(backend, vm_id, "cat /proc/1/comm; grep CapBnd /proc/1/status")
        comm, bounding = init.out.splitlines()[0], init.out.split()[-1]
        assert comm == "systemd", init.out
        assert not int(bounding, 16) & (1 << CAP_SYS_ADMIN), "systemd got CAP_SYS_ADMIN"
        service = run_in(
            backend, vm_id, "systemctl is-active qvd-vma.service; "
            "systemctl show -p MainPID --value qvd-vma.service",
        )  # fmt: skip
        active, main_pid = service.out.split()
        assert active == "active", service.out
        assert int(main_pid) > 1  # the VMA is a service, not PID 1

        secret = vm_secret(engine, vm_id)
        client = VmaClient(lxc_node.vm_address(1), secret=secret, timeout=10.0)
        wait_ping(client)
        started = client.x_start(USER)
        assert len(str(started["cookie"])) == 32
        assert wait_state(client, "listening", timeout=30) == "listening"
        assert "alice:x:23456:" in run_in(backend, vm_id, "cat /etc/passwd").out
        log = run_in(backend, vm_id, "cat /var/log/qvd/vma.log").out
        assert "identity: no fw_cfg entry; the secret comes from /etc/qvd/vma.secret" in log
        assert secret not in log

        # poweroff: the VMA asks systemd, which halts the container
        client.x_stop()
        assert wait_state(client, "stopped", timeout=30) == "stopped"
        client.poweroff()
        wait_for(lambda: not backend.is_alive(vm_id), 120, "the container halted by poweroff")
        wait_for(lambda: state_of(engine, vm_id) == "stopped", 120, "VM stopped")

        # the HKD's stop: lxc.signal.halt makes systemd halt (SIGTERM would re-exec it)
        start_vm(engine, hkd, vm_id)
        again = VmaClient(lxc_node.vm_address(1), secret=vm_secret(engine, vm_id), timeout=10.0)
        wait_ping(again, timeout=60)
        command(engine, vm_id, "stop")
        wait_for(lambda: not backend.is_alive(vm_id), 120, "the container halted by the HKD")
        wait_for(lambda: state_of(engine, vm_id) == "stopped", 120, "VM stopped")
