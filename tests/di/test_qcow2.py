"""The ``test`` recipe built as a KVM image (``test_image_qcow2``), looked at from outside
without mounting it (qemu-img, blkid, debugfs on a raw copy), then booted by QEMU under
TCG with user-mode networking that reaches nothing (``restrict=on``): systemd starts
``qvd-vma.service``, the guest takes its address by DHCP and the VMA answers through a
forwarded loopback port, and QEMU's power button shuts the guest down."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qvd.di.vmstage import CMDLINE
from qvd.hkd.backends.kvm.bootfiles import boot_files
from qvd.imagefile.qcow2 import check_qcow2
from tests.conftest import end_process, free_port

pytestmark = pytest.mark.timeout(1200)  # the first run on a machine builds the image

BOOT_BUDGET = 180.0  # seconds from QEMU's start to the VMA listening, under TCG


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def raw_disk(test_image_qcow2: Path) -> Iterator[Path]:
    """The image's disk as a raw (sparse) file, for blkid and debugfs; never mounted."""
    folder = Path(f"/var/tmp/qvd-test-qcow2-{os.getpid()}")
    folder.mkdir(mode=0o700)
    try:
        raw = folder / "disk.raw"
        _run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(test_image_qcow2), str(raw))
        yield raw
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _debugfs(raw: Path, request: str) -> str:
    return _run("debugfs", "-R", request, str(raw))


def _stat_type(raw: Path, path: str) -> str:
    found = re.search(r"Type: (\w+)", _debugfs(raw, f"stat {path}"))
    return found[1] if found else "missing"


def test_the_disk_is_a_plain_qcow2_v3(test_image_qcow2: Path) -> None:
    info = json.loads(_run("qemu-img", "info", "--output=json", str(test_image_qcow2)))
    assert info["format"] == "qcow2"
    assert info["format-specific"]["data"]["compat"] == "1.1"
    assert "backing-filename" not in info
    assert "data-file" not in info["format-specific"]["data"]
    assert info["virtual-size"] > info["actual-size"]  # headroom, compressed clusters
    meta = json.loads(test_image_qcow2.with_suffix(".json").read_text())
    assert meta["format"] == "qcow2"
    assert meta["file"] == test_image_qcow2.name == f"test-{meta['recipe_hash']}.qcow2"
    assert meta["image_bytes"] == test_image_qcow2.stat().st_size
    assert {"systemd-sysv", "udev", "kmod", "e2fsprogs", "nxagent"} <= set(meta["packages"])
    assert any(p.startswith("linux-image-") and "cloud" in p for p in meta["packages"])


def test_the_whole_disk_is_ext4_qvdroot(raw_disk: Path) -> None:
    probe = _run("blkid", "-p", "-o", "export", str(raw_disk))
    fields = dict(line.split("=", 1) for line in probe.splitlines() if "=" in line)
    assert fields["TYPE"] == "ext4"
    assert fields["LABEL"] == "qvdroot"
    assert "PTTYPE" not in fields  # no partition table: the file system starts at 0


def test_the_boot_files_and_systemd_are_in_place(raw_disk: Path) -> None:
    for name in ("vmlinuz", "initrd.img", "cmdline"):
        assert _stat_type(raw_disk, f"/boot/qvd/{name}") == "regular", name
    assert _debugfs(raw_disk, "cat /boot/qvd/cmdline") == CMDLINE + "\n"
    # the VMA is systemd's service, enabled in multi-user.target
    wants = "/etc/systemd/system/multi-user.target.wants"
    assert _stat_type(raw_disk, f"{wants}/qvd-vma.service") == "symlink"
    assert "qvd-vma.service" in _debugfs(raw_disk, f"ls {wants}")
    unit = _debugfs(raw_disk, "cat /usr/lib/systemd/system/qvd-vma.service")
    assert "ExecStart=/usr/lib/qvd/bin/qvd-vma" in unit
    assert "WantedBy=multi-user.target" in unit
    assert "console" in unit  # its start shows on the serial console
    conf = _debugfs(raw_disk, "cat /etc/qvd/vma.conf")
    assert "vma.init = systemd\n" in conf
    assert _stat_type(raw_disk, "/sbin/init") in ("symlink", "regular")
    # network by DHCP on any NIC; masked consoles and timers; a machine id per VM
    network = _debugfs(raw_disk, "cat /etc/systemd/network/80-qvd-dhcp.network")
    assert "Name=en* eth*" in network
    assert "DHCP=ipv4" in network
    assert "systemd-networkd.service" in _debugfs(raw_disk, f"ls {wants}")
    for unit_name in ("getty@.service", "apt-daily.timer", "systemd-firstboot.service"):
        assert "/dev/null" in _debugfs(raw_disk, f"stat /etc/systemd/system/{unit_name}")
    assert _debugfs(raw_disk, "cat /etc/machine-id") == ""


def test_only_the_modules_a_vm_uses_are_kept(raw_disk: Path) -> None:
    versions = [
        line.split()[-1]
        for line in _debugfs(raw_disk, "ls -l /lib/modules").splitlines()
        if line.split() and line.split()[-1] not in (".", "..")
    ]
    assert len(versions) == 1, versions
    drivers = f"/lib/modules/{versions[0]}/kernel/drivers"
    assert _stat_type(raw_disk, f"{drivers}/net/virtio_net.ko") == "regular"
    assert _stat_type(raw_disk, f"{drivers}/firmware/qemu_fw_cfg.ko") == "regular"
    assert _stat_type(raw_disk, f"{drivers}/block/virtio_blk.ko") == "regular"
    assert _stat_type(raw_disk, f"{drivers}/infiniband") == "missing"
    assert _stat_type(raw_disk, f"{drivers}/md") == "missing"
    assert _stat_type(raw_disk, f"{drivers}/gpu") == "missing"
    assert _stat_type(raw_disk, "/lib/firmware") == "missing"


# ---- booting it ---------------------------------------------------------------------------
def _qmp(path: Path, *commands: dict[str, Any]) -> list[dict[str, Any]]:
    """Send QMP commands on a fresh connection; their answers, events skipped."""
    answers: list[dict[str, Any]] = []
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        stream = sock.makefile("rw", encoding="utf-8")
        json.loads(stream.readline())  # greeting
        for command in ({"execute": "qmp_capabilities"}, *commands):
            stream.write(json.dumps(command) + "\n")
            stream.flush()
            while True:
                message = json.loads(stream.readline())
                if "return" in message or "error" in message:
                    answers.append(message)
                    break
    return answers


def _wait_for(check: Any, deadline: float, what: str) -> None:
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _vma_answers(port: int) -> bool:
    """Whether the VMA answers HTTP on the forwarded port (401: no secret was given)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /vma/ping HTTP/1.1\r\nHost: vma\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.")
    except OSError:
        return False


def test_qemu_boots_the_image_to_the_vma(test_image_qcow2: Path, evidence_dir: Path) -> None:
    """The boot smoke test: the kernel, initrd and command line from the image itself,
    an overlay over the cached image, TCG, 2 vCPUs, user-mode network restricted to the
    guest (only the loopback port forward reaches it)."""
    run = Path(f"/var/tmp/qvd-test-qemu-{os.getpid()}")
    run.mkdir(mode=0o700)
    proc: subprocess.Popen[bytes] | None = None
    try:
        # as the KVM backend takes them: the DI checked, its boot files read out of it
        check_qcow2(test_image_qcow2, max_virtual_bytes=4 * 2**30)
        (run / "boot").mkdir()
        boot = boot_files(test_image_qcow2, run / "boot")
        assert boot.cmdline == CMDLINE
        overlay = run / "overlay.qcow2"
        _run("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(test_image_qcow2),
             "-F", "qcow2", str(overlay))  # fmt: skip
        console, qmp, port = run / "console.log", run / "qmp.sock", free_port()
        started = time.monotonic()
        errors = (run / "qemu.err").open("wb")
        proc = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "tcg,tb-size=128", "-machine", "pc",
             "-m", "512", "-smp", "2", "-nodefaults", "-no-user-config", "-display", "none",
             "-kernel", str(boot.kernel), "-initrd", str(boot.initrd),
             "-append", boot.cmdline,
             "-drive", f"file={overlay},if=virtio,format=qcow2",
             "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:3030",
             "-device", "virtio-net-pci,netdev=n0",
             "-serial", f"file:{console}", "-qmp", f"unix:{qmp},server=on,wait=off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
        )  # fmt: skip
        errors.close()

        def vma_listening() -> bool:
            assert proc is not None
            assert proc.poll() is None, (run / "qemu.err").read_text(errors="replace")
            return console.exists() and "listening on" in console.read_text(errors="replace")

        _wait_for(vma_listening, started + BOOT_BUDGET, "qvd-vma.service on the console")
        boot_seconds = time.monotonic() - started
        log = console.read_text(errors="replace")
        assert re.search(r"qvd-vma\[\d+\]: .*listening on 0\.0\.0\.0:3030", log), log[-2000:]
        # the address came by DHCP (networkd): the VMA is reached through the guest's NIC
        _wait_for(lambda: _vma_answers(port), time.monotonic() + 60, "the VMA over the network")
        print(f"boot_to_vma_s={boot_seconds:.1f}")
        (evidence_dir / "qcow2-boot-console.log").write_text(log)
        # the power button (ACPI) reaches logind: the guest shuts down, QEMU exits
        assert _qmp(qmp, {"execute": "system_powerdown"})[-1] == {"return": {}}
        proc.wait(timeout=120)
        assert proc.returncode == 0
    finally:
        if proc is not None:
            end_process(proc)
        shutil.rmtree(run, ignore_errors=True)


def test_qvd_di_build_qcow2_from_the_command_line(test_image_qcow2: Path, tmp_path: Path) -> None:
    """`qvd di build test --format qcow2 --output DIR` with the image cached: no step
    runs, the image is copied out; `qvd di info` and `qvd di recipes` show it."""
    cache = test_image_qcow2.parent
    qvd = str(Path(sys.executable).with_name("qvd"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [qvd, "di", *args, "--cache", str(cache)],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip

    done = run("build", "test", "--format", "qcow2", "--output", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # from the cache, no step ran
    copied = tmp_path / test_image_qcow2.name
    assert lines[0].startswith(f"{copied} (")
    assert copied.read_bytes() == test_image_qcow2.read_bytes()
    info = run("info", "test", "--format", "qcow2")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["file"] == test_image_qcow2.name
    listing = run("recipes", "--format", "qcow2")
    test_line = next(line for line in listing.stdout.splitlines() if line.startswith("test "))
    assert "cached" in test_line
    assert test_image_qcow2.name.removeprefix("test-").removesuffix(".qcow2") in test_line
