"""The VMA in a real KVM guest (QEMU under TCG here): the `test` recipe's qcow2 image
boots systemd, which starts ``qvd-vma.service``; the VMA takes its identity from fw_cfg
(secret, host name, home disk serial), formats the empty home disk on first use and
mounts it, provisions a session, and ``poweroff`` ends the guest through systemd. A
second boot mounts the same home without formatting it.

The guest's network is QEMU's user mode with ``restrict=on`` (no route out) and one
forwarded loopback port to the VMA."""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qvd.hkd.backends.kvm.bootfiles import BootFiles
from qvd.hkd.backends.kvm.bootfiles import boot_files as extract_boot_files
from qvd.vma.client import VmaAuthError, VmaClient, VmaError
from tests.vma.helpers import wait_state

pytestmark = [pytest.mark.lxc, pytest.mark.slow, pytest.mark.timeout(1200)]

BOOT_BUDGET = 180.0  # seconds to VMA ready under TCG (the budget)
USER = {"qvd.vm.user.name": "alice", "qvd.vm.user.uid": "23456"}


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


@pytest.fixture(scope="session")
def boot_files(guest_image: Path, tmp_path_factory: pytest.TempPathFactory) -> BootFiles:
    """The kernel, initrd and command line of the image, as the KVM backend takes them."""
    return extract_boot_files(guest_image, tmp_path_factory.mktemp("boot") / "cache")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Guest:
    proc: subprocess.Popen[bytes]
    client: VmaClient
    serial: Path

    def log(self) -> str:
        text = self.serial.read_text(errors="replace") if self.serial.exists() else ""
        return text.replace("\r", "")


StartGuest = Callable[[str, int], Guest]


@pytest.fixture
def boot(
    guest_image: Path, boot_files: BootFiles, tmp_path: Path
) -> Iterator[tuple[Path, StartGuest]]:
    """Factory: boot a guest with a fw_cfg identity and a home disk; each QEMU is
    killed by its PID at the end and its files removed (tmp_path)."""
    started: list[subprocess.Popen[bytes]] = []
    home = tmp_path / "home.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(home), "256M"], check=True)

    def start(secret: str, n: int) -> Guest:
        run = tmp_path / f"run{n}"
        run.mkdir()
        identity = run / "identity.json"
        fd = os.open(identity, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"version": 1, "vm_id": 10042, "hostname": "desk-42",
                       "vma_secret": secret, "home_serial": "qvd-home"}, out)  # fmt: skip
        overlay = run / "overlay.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(guest_image), "-F", "qcow2",
             str(overlay)], check=True,
        )  # fmt: skip
        port = _free_port()
        argv = [
            "qemu-system-x86_64", "-accel", "tcg,tb-size=128", "-m", "768", "-smp", "1",
            "-no-reboot", "-display", "none", "-monitor", "none",
            "-serial", f"file:{run / 'serial.log'}",
            "-kernel", str(boot_files.kernel), "-initrd", str(boot_files.initrd),
            "-append", boot_files.cmdline,
            "-drive", f"file={overlay},if=none,id=root,format=qcow2",
            "-device", "virtio-blk-pci,drive=root",
            "-drive", f"file={home},if=none,id=home,format=qcow2",
            "-device", "virtio-blk-pci,drive=home,serial=qvd-home",
            "-fw_cfg", f"name=opt/org.qvd/identity,file={identity}",
            "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:3030",
            "-device", "virtio-net-pci,netdev=n0",
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        started.append(proc)
        client = VmaClient("127.0.0.1", port=port, secret=secret, timeout=5)
        return Guest(proc, client, run / "serial.log")

    yield home, start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def wait_ready(guest: Guest) -> None:
    end = time.monotonic() + BOOT_BUDGET
    while time.monotonic() < end and guest.proc.poll() is None:
        try:
            guest.client.ping()
            return
        except VmaError:
            time.sleep(1)
    raise AssertionError(f"no VMA within {BOOT_BUDGET:g} s\n{guest.log()[-4000:]}")


def test_identity_home_drive_and_poweroff_in_a_kvm_guest(
    boot: tuple[Path, StartGuest], tmp_path: Path
) -> None:
    home, start = boot
    for n, expected in ((1, "formatted and mounted"), (2, "mounted")):
        secret = os.urandom(32).hex()
        guest = start(secret, n)
        wait_ready(guest)
        with pytest.raises(VmaAuthError):  # the identity's secret only
            VmaClient("127.0.0.1", port=guest.client.port, secret="f" * 64, timeout=5).ping()
        guest.client.x_start(USER)
        assert wait_state(guest.client, "listening", timeout=120) == "listening", guest.log()
        guest.client.x_stop()
        assert wait_state(guest.client, "stopped", timeout=60) == "stopped"
        guest.client.poweroff()
        assert guest.proc.wait(timeout=120) == 0  # systemd powered the guest off
        log = guest.log()
        assert "identity: fw_cfg (vm 10042, host name desk-42, home disk qvd-home)" in log
        assert f"home drive /dev/disk/by-id/virtio-qvd-home: {expected}\n" in log
        assert secret not in log
    raw = tmp_path / "home.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(home), str(raw)], check=True)
    label = subprocess.run(["blkid", "-s", "LABEL", "-o", "value", str(raw)],
                           capture_output=True, text=True, check=False).stdout  # fmt: skip
    listing = subprocess.run(["debugfs", "-R", "ls -l /", str(raw)],
                             capture_output=True, text=True, check=False).stdout  # fmt: skip
    raw.unlink()
    assert label.strip() == "qvdhome"
    assert " 23456 " in listing  # alice's home, kept across the two boots
