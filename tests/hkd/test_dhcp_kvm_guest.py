"""A KVM guest takes its address from the node's dnsmasq: the `test` recipe as a qcow2
(its network comes by DHCP, systemd-networkd) booted under QEMU TCG on a tap of a node
network made by the HKD's code (bridge, firewall with its DHCP holes, the tap admitted
to the port filter with the VM's MAC), with one static lease for that MAC. The VMA
answering at the leased address, through the node's bridge, proves the whole path;
nothing is configured in the guest but by DHCP.

QEMU is killed by its PID and the tap, bridge, nft tables and dnsmasq removed on
every exit path."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.hkd.addressing import mac_for
from qvd.hkd.backends.kvm import KvmBackend
from qvd.hkd.backends.kvm.bootfiles import BootFiles, boot_files
from qvd.hkd.daemon import Hkd
from qvd.hkd.dhcp import StaticLease
from qvd.hkd.ports import Port
from qvd.vma.client import VmaClient, VmaError
from tests.conftest import scratch_dir
from tests.hkd.conftest import add_host, command, runtime, state_of, wait_for
from tests.hkd.dhcpclient import dhcp_node
from tests.hkd.lxcnode import LxcNode, add_lxc_vm

pytestmark = [pytest.mark.root, pytest.mark.slow]

BOOT_BUDGET = 180.0  # seconds to VMA ready under TCG (the budget)


@pytest.fixture
def run(root_only: None) -> Iterator[Path]:
    path = scratch_dir(f"qvd-test-dhcp-kvm-{os.getpid()}-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _qemu(run: Path, image: Path, boot: BootFiles, tap: str, mac: str, secret: str) -> list[str]:
    identity = run / "identity.json"
    fd = os.open(identity, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"version": 1, "vm_id": 10001, "hostname": "desk-1",
                   "vma_secret": secret, "home_serial": None}, out)  # fmt: skip
    overlay = run / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2",
                    str(overlay)], check=True)  # fmt: skip
    return [
        "qemu-system-x86_64", "-accel", "tcg,tb-size=128", "-m", "768", "-smp", "1",
        "-no-reboot", "-display", "none", "-monitor", "none", "-nodefaults",
        "-serial", f"file:{run / 'serial.log'}",
        "-kernel", str(boot.kernel), "-initrd", str(boot.initrd), "-append", boot.cmdline,
        "-drive", f"file={overlay},if=none,id=root,format=qcow2",
        "-device", "virtio-blk-pci,drive=root",
        "-fw_cfg", f"name=opt/org.qvd/identity,file={identity}",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
    ]  # fmt: skip


def test_a_kvm_guest_takes_its_leased_address(test_image_qcow2: Path, run: Path) -> None:
    guest_image = test_image_qcow2
    boot = boot_files(guest_image, run / "boot")
    tap = f"qvdk{secrets.token_hex(3)}"
    secret = secrets.token_hex(32)
    with contextlib.ExitStack() as stack:
        net, server = stack.enter_context(dhcp_node(run))
        address = net.vm_address(1)
        mac = mac_for(address)
        server.set_leases([StaticLease(mac=mac, ip=address, hostname="desk-1")])
        subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
        stack.callback(subprocess.run, ["ip", "link", "del", tap], capture_output=True)
        net.ports.admit(Port(tap, mac, address))  # filtered before the guest speaks
        subprocess.run(["ip", "link", "set", tap, "master", net.bridge, "up"], check=True)
        route = subprocess.run(["ip", "-o", "route", "get", address], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        assert f" dev {net.bridge} " in route  # only through our own bridge

        proc = subprocess.Popen(_qemu(run, guest_image, boot, tap, mac, secret),
                                stdin=subprocess.DEVNULL)  # fmt: skip
        stack.callback(proc.wait)
        stack.callback(proc.kill)  # by its PID (runs before the wait)
        client = VmaClient(address, secret=secret, timeout=3)
        deadline = time.monotonic() + BOOT_BUDGET
        answered = False
        while not answered and time.monotonic() < deadline and proc.poll() is None:
            try:
                client.ping()
                answered = True
            except (VmaError, OSError):
                time.sleep(1)
        serial = run / "serial.log"
        log = serial.read_text(errors="replace") if serial.exists() else ""
        assert answered, f"no VMA at {address} within {BOOT_BUDGET:g} s\n{log[-4000:]}"


# ---- the HKD, the KVM backend and the node's DHCP together ---------------------------------
def test_the_hkd_starts_a_kvm_desktop_that_takes_its_address_by_dhcp(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image_qcow2: Path
) -> None:
    """A start command: the HKD serves the VM's lease, the KVM backend boots the guest
    on a tap of the node's bridge, the guest asks the node's dnsmasq for its address,
    and the HKD's VMA probe finds it there (``running``); a stop ends it."""
    config = lxc_node.config(**{
        "vm.hypervisor": "kvm", "vm.kvm.accel": "tcg", "internal.hkd.stopping.vms": "1",
        "internal.hkd.watchdog.enable": "0",
        "internal.vm.network.device.prefix": f"qd{secrets.token_hex(2)}",
    })  # fmt: skip
    host = add_host(engine, lxc_node.name, lxc_node.host_address)
    vm_id, osf_id = add_lxc_vm(engine, lxc_node, test_image_qcow2, 1)
    with engine.begin() as conn:
        conn.execute(text("UPDATE osfs SET memory = 512 WHERE id = :o"), {"o": osf_id})
    hkd = Hkd(config, target=db)
    hkd.start()
    try:
        assert hkd.dhcp is not None
        command(engine, vm_id, "start", host.id)

        def settled() -> bool:
            row = runtime(engine, vm_id)
            return row["vm_state"] == "running" or bool(row["last_error"])

        wait_for(settled, 240, "the VM to run")
        row = runtime(engine, vm_id)
        assert row["vm_state"] == "running", row["last_error"]
        leased = [lease.ip for lease in hkd.dhcp.leases.leases()]
        assert lxc_node.vm_address(1) in leased
        command(engine, vm_id, "stop")
        wait_for(lambda: state_of(engine, vm_id) == "stopped", 180, "the VM to stop")
    finally:
        hkd.stop()
        backend = KvmBackend(config)
        for left in backend.list_leftovers():  # by its PID, whatever happened
            with contextlib.suppress(Exception):
                backend.kill(left)
            with contextlib.suppress(Exception):
                backend.cleanup(left)
