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
import inspect
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.hkd.addressing import mac_for
from qvd.hkd.backends.kvm.bootfiles import BootFiles, boot_files
from qvd.hkd.dhcp import DhcpSettings, StaticLease
from qvd.hkd.dnsmasq import Dnsmasq
from qvd.hkd.ports import Port
from qvd.vma.client import VmaClient, VmaError
from tests.conftest import scratch_dir
from tests.security.hostile_net import node_net

pytestmark = [pytest.mark.root, pytest.mark.slow]

BOOT_BUDGET = 180.0  # seconds to VMA ready under TCG (the budget)


@pytest.fixture(scope="session")
def guest_image() -> Path:
    """The `test` recipe as a qcow2 (built once per machine, then cached)."""
    from qvd.di import ensure_image

    if "fmt" not in inspect.signature(ensure_image).parameters:
        pytest.skip("no qcow2 image format in this tree yet (`qvd di build --format qcow2`)")
    cache = os.environ.get("QVD_TEST_DI_CACHE")
    return ensure_image(  # type: ignore[call-arg,unused-ignore]
        "test", cache=Path(cache) if cache else None, fmt="qcow2"
    )


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


def test_a_kvm_guest_takes_its_leased_address(guest_image: Path, run: Path) -> None:
    boot = boot_files(guest_image, run / "boot")
    tap = f"qvdk{secrets.token_hex(3)}"
    secret = secrets.token_hex(32)
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(node_net(dhcp=True))
        address = net.vm_address(1)
        mac = mac_for(address)
        server = Dnsmasq(
            DhcpSettings(
                enabled=True, bridge=net.bridge, server_address=net.node_address,
                network=net.network.network, lease_time=600, dns=False, dns_servers=(),
                run_dir=run / "dhcp",
            )
        )  # fmt: skip
        stack.callback(server.stop)
        server.start()
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
