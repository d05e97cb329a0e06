"""``qvd up`` on a hypervisor that boots slowly (KVM): it asks its node to boot the demo
desktop and says how the boot goes until the VM runs, fails or runs out of time; the
node stays up either way. The node's side (claiming the start, the states it writes)
is played by the test on a real database, as the HKD's store writes them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.node.hostneeds import host_needs, missing_packages
from qvd.node.up import boot_demo_desktop
from tests.hkd.conftest import add_host, add_vm, runtime
from tests.node.test_cli import qvd


@contextmanager
def node_answers(engine: Engine, vm_id: int, final: str, error: str | None) -> Iterator[None]:
    """A node that claims the start ('starting'), then after a while writes ``final``."""
    done = threading.Event()

    def play() -> None:
        while not done.wait(0.05):
            if runtime(engine, vm_id)["vm_cmd"] == "start":
                break
        with engine.begin() as conn:
            conn.execute(text("UPDATE vm_runtimes SET vm_cmd = NULL, vm_state = 'starting' "
                              "WHERE vm_id = :v"), {"v": vm_id})  # fmt: skip
        if done.wait(1.2):
            return
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE vm_runtimes SET vm_state = :s, last_error = :e WHERE vm_id = :v"),
                {"s": final, "e": error, "v": vm_id},
            )

    thread = threading.Thread(target=play)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_the_boot_is_asked_and_followed_until_the_desktop_runs(
    db: DatabaseTarget, engine: Engine
) -> None:
    host = add_host(engine)
    vm_id, _ = add_vm(engine)
    said: list[str] = []
    with node_answers(engine, vm_id, "running", None):
        ok = boot_demo_desktop(db, vm_id, host.id, said.append, threading.Event(),
                               accel="tcg", budget=60, every=0.4)  # fmt: skip
    assert ok
    assert runtime(engine, vm_id)["host_id"] == host.id
    assert said[0].startswith(f"booting the demo desktop, VM {vm_id}, with accel=tcg (TCG:")
    assert any(line.startswith("  still booting: ") and "starting" in line for line in said)
    assert said[-1].startswith("  the demo desktop is running (")


def test_a_failed_boot_is_said_and_the_node_stays_up(db: DatabaseTarget, engine: Engine) -> None:
    host = add_host(engine)
    vm_id, _ = add_vm(engine)
    said: list[str] = []
    with node_answers(engine, vm_id, "stopped", "the disk image is a tarball, not a qcow2"):
        ok = boot_demo_desktop(db, vm_id, host.id, said.append, threading.Event(),
                               accel="kvm", budget=60, every=10)  # fmt: skip
    assert not ok
    assert "(TCG" not in said[0]
    assert said[-1] == ("  the demo desktop did not boot: the disk image is a tarball, not a "
                        "qcow2; the node stays up (see its log)")  # fmt: skip


def test_a_boot_past_its_budget_is_given_up(db: DatabaseTarget, engine: Engine) -> None:
    host = add_host(engine)
    vm_id, _ = add_vm(engine)
    said: list[str] = []
    with node_answers(engine, vm_id, "starting", None):
        ok = boot_demo_desktop(db, vm_id, host.id, said.append, threading.Event(),
                               accel="tcg", budget=0.6, every=10)  # fmt: skip
    assert not ok
    assert said[-1].startswith("  the demo desktop did not boot: not running after ")


def test_a_running_desktop_is_not_started_again(db: DatabaseTarget, engine: Engine) -> None:
    host = add_host(engine)
    vm_id, _ = add_vm(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE vm_runtimes SET vm_state = 'running', host_id = :h "
                          "WHERE vm_id = :v"), {"h": host.id, "v": vm_id})  # fmt: skip
    said: list[str] = []
    assert boot_demo_desktop(db, vm_id, host.id, said.append, threading.Event(),
                             accel="tcg", budget=5)  # fmt: skip
    assert said[0].endswith("; already on its way")
    assert runtime(engine, vm_id)["vm_cmd"] is None


@pytest.mark.parametrize(
    ("hypervisor", "image_format", "slow"), [("lxc", "lxc-tar-zst", False), ("kvm", "qcow2", True)]
)
def test_what_each_hypervisor_needs(hypervisor: str, image_format: str, slow: bool) -> None:
    needs = host_needs(hypervisor)
    assert (needs.image_format, needs.boots_slowly) == (image_format, slow)
    if hypervisor == "kvm":
        assert {"qemu-system-x86", "qemu-utils", "dnsmasq-base"} <= set(needs.packages)
        assert needs.demo_memory_mb >= 512


def test_missing_packages_asks_dpkg() -> None:
    assert missing_packages(("dpkg", "qvd-no-such-package")) == ["qvd-no-such-package"]


def test_up_refuses_a_hypervisor_it_does_not_have() -> None:
    done = qvd("up", "--hypervisor", "xen")
    assert done.returncode == 1
    assert "qvd: error: --hypervisor 'xen': use one of " in done.stderr
    assert "lxc" in done.stderr
