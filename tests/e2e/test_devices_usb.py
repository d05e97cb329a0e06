"""A client's USB device in a KVM desktop over USB/IP through the slave channel (#16).

A real KVM node (QEMU under TCG) boots the ``test-usb`` image (the test image on Debian's
generic kernel, which has vhci-hcd); a real ``qvd-client`` session asks for USB with
``client.usb.share.1``. The device is the emulated one of ``tests/usbipdev.py``, plugged
into the client through its test entry (``tests/usbipclient.py``): the desktop's VMA
loads vhci-hcd, the slave program hands the channel to the VMA's attach service, which
sends OP_REQ_IMPORT, reads the client's OP_REP_IMPORT and gives the stream to vhci-hcd;
the guest's usbcore enumerates the device over it.

A loop typed into the session's xterm records, every second, the guest's USB devices
(``/sys/bus/usb/devices/*/idVendor`` and ``product``), their device nodes and which of
them the session's user can read and write, into a file of the home; the file is read
from the home disk once the VM is stopped. The device must show up (the emulated vendor
id and product string, its node the user's, read-write) and be gone after the session
is suspended (the client goes away), before the VM is stopped.

LXC desktops cannot attach (a container loads no kernel module): on a real LXC node the
same client with the same device is refused with the reason, and the session goes on.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.di.testbed import Xvfb
from tests.e2e.devices import enable_device_properties, osf_of, set_vm_property
from tests.e2e.keys import type_text
from tests.e2e.kvmnode import KvmDesktop, KvmNode, home_file, kvm_node
from tests.e2e.node import Client, L7rNode, set_password
from tests.hkd.conftest import command, runtime, state_of, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.usbipdev import BUSID, PRODUCT, PRODUCT_ID, VENDOR_ID
from tests.vma.helpers import wait_for_xterm, xterm_visible

pytestmark = pytest.mark.timeout(900)

BOOT_BUDGET = 180
STOP_DEADLINE = 120


@pytest.fixture(scope="module")
def usb_image_qcow2() -> Path:
    """The ``test-usb`` recipe as a KVM image (built once, cached by hash; heavy lock)."""
    from qvd.di import ensure_image

    if os.geteuid() != 0:
        pytest.fail("building a disk image needs root (chroot, mkfs of the image)")
    cache = os.environ.get("QVD_TEST_DI_CACHE")
    return ensure_image(
        "test-usb",
        progress=lambda p: print(p.render(), flush=True),
        cache=Path(cache) if cache else None,
        fmt="qcow2",
    )


class UsbClient(Client):
    """``qvd-client`` run through ``tests.usbipclient`` (the emulated device plugged in)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.usbipclient", *argv], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
        )  # fmt: skip
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


def usb_client(node: KvmNode, desk: KvmDesktop, display: str, home: Path) -> UsbClient:
    return usb_client_for(node.port, desk.login, desk.password_file, desk.vm_id, display, home)


def usb_client_for(
    port: int, login: str, password_file: Path, vm_id: int, display: str, home: Path
) -> UsbClient:
    conf = home / ".config" / "qvd" / "client.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f"client.usb.enable = 1\nclient.usb.share.1 = {BUSID}\n")
    conf.chmod(0o600)
    env = {**os.environ, "DISPLAY": display, "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / ".config"), "NX_ROOT": str(home / "nx"),
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    argv = ["--host", "127.0.0.1", "--port", str(port), "--user", login,
            "--password-file", str(password_file), "--vm", str(vm_id), "--insecure",
            "--link", "lan"]  # fmt: skip
    return UsbClient(argv, env)


# POSIX sh the xterm's shell runs; only characters tests/e2e/keys.py can type
PROBE = (
    "cd; id -u > usbprobe.txt; while true; do "
    "grep -H . /sys/bus/usb/devices/*/idVendor /sys/bus/usb/devices/*/product; "
    "ls -ln /dev/bus/usb/*/*; "
    "for f in /dev/bus/usb/*/*; do test -r $f -a -w $f && echo RW $f; done; "
    "echo END; sync; sleep 1; done >> usbprobe.txt 2>&1 &\n"
)


def snapshots(probe: str) -> tuple[int, list[str]]:
    """(the user's uid, the complete snapshots in order)."""
    first, _, rest = probe.partition("\n")
    parts = rest.split("END\n")
    return int(first), parts[:-1]  # the last part was cut by the stop


def device_in(snapshot: str) -> bool:
    return f"idVendor:{VENDOR_ID:04x}" in snapshot


def user_owns_one_rw_node(snapshot: str, uid: int) -> bool:
    """Exactly one USB node read-write for the user, and it is owned by ``uid``."""
    rw = [line.split()[1] for line in snapshot.splitlines() if line.startswith("RW ")]
    if len(rw) != 1:
        return False
    owners = [line.split()[2] for line in snapshot.splitlines()
              if line.startswith("c") and line.endswith(rw[0])]  # fmt: skip
    return owners == [str(uid)]


def user_state(engine: Engine, vm_id: int) -> str:
    return str(runtime(engine, vm_id)["user_state"])


def test_a_client_usb_device_attaches_in_a_kvm_desktop_and_goes_on_suspend(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, usb_image_qcow2: Path,
    tmp_path: Path, evidence_dir: Path,
) -> None:  # fmt: skip
    xvfb = Xvfb()
    client: UsbClient | None = None
    try:
        with kvm_node(db, engine, lxc_node) as node:
            desk = node.add_desktop(usb_image_qcow2)
            enable_device_properties(engine, osf_of(engine, desk.vm_id), {"vma.slave.enable": "1"})
            node.start_hkd("usb")
            client = usb_client(node, desk, xvfb.display, tmp_path / "client")
            started = client

            def booted() -> bool:
                return state_of(engine, desk.vm_id) == "running" or started.proc.poll() is not None

            wait_for(booted, BOOT_BUDGET, f"VM {desk.vm_id} running within the boot budget")
            shot = wait_for_xterm(xvfb.display, 120)
            shot.save_png(evidence_dir / "kvm-usb-desktop.png")
            assert xterm_visible(shot), client.output()
            box = shot.bright_box()
            assert box is not None
            type_text(xvfb.display, PROBE, at=((box[0] + box[2]) // 2, (box[1] + box[3]) // 2))

            # the client exported the device, the desktop attached it
            wait_for(lambda: "shared with the desktop" in started.output(), 90,
                     f"the client sharing {BUSID}:\n{started.output()}")  # fmt: skip
            shared = next(x for x in client.lines if "shared with the desktop" in x)
            assert f"{VENDOR_ID:04x}:{PRODUCT_ID:04x}" in shared, shared
            print(shared)
            time.sleep(12)  # the probe records the attached device a few times

            # suspend: the client goes away; the device must go from the guest
            client.close()
            wait_for(lambda: user_state(engine, desk.vm_id) == "disconnected", 60,
                     "the session suspended")  # fmt: skip
            time.sleep(12)  # the probe records the guest after the detach
            command(engine, desk.vm_id, "stop")
            wait_for(lambda: state_of(engine, desk.vm_id) == "stopped", STOP_DEADLINE, "stopped")

            disk = next(node.config().get_path("path.storage.homes").glob(f"{desk.vm_id}-*"))
            probe = home_file(disk, "usbprobe.txt", tmp_path) or ""
            (evidence_dir / f"usbprobe-{secrets.token_hex(2)}.txt").write_text(probe)
            uid, snaps = snapshots(probe)
            with_device = [s for s in snaps if device_in(s)]
            assert with_device, f"the device never showed up in the guest:\n{probe[-3000:]}"
            # a snapshot of the attached device (not one taken while it came or went):
            # its product string, its node the session user's and read-write for them
            # (the root hubs' nodes are root's)
            whole = [s for s in with_device if user_owns_one_rw_node(s, uid)]
            assert whole, f"no snapshot with the device's node the user's:\n{with_device[-1]}"
            assert f"product:{PRODUCT}" in whole[0], whole[0]
            # after the suspend: gone (the last snapshots before the stop)
            assert snaps.index(with_device[-1]) < len(snaps) - 1
            assert not device_in(snaps[-1]), snaps[-1]
            print(f"usb: {len(with_device)} of {len(snaps)} snapshots showed the device")
    finally:
        if client is not None:
            client.close()
        xvfb.close()


def test_an_lxc_desktop_refuses_usb_with_the_reason_and_the_session_goes_on(
    engine: Engine, node: L7rNode, test_image: Path, tmp_path: Path
) -> None:
    vm_id, _ = add_lxc_vm(engine, node.lxc, test_image, 1)
    set_vm_property(engine, vm_id, "vma.slave.enable", "1")
    login = set_password(engine, vm_id, "s3cret!")
    password_file = tmp_path / "password"
    password_file.write_text("s3cret!\n")
    xvfb = Xvfb()
    client = usb_client_for(node.port, login, password_file, vm_id, xvfb.display,
                            tmp_path / "client")  # fmt: skip
    try:
        wait_for(lambda: "USB refused by the desktop" in client.output(), 120,
                 f"the desktop's USB refusal:\n{client.output()}")  # fmt: skip
        refusal = next(x for x in client.lines if "USB refused by the desktop" in x)
        assert refusal.startswith(
            "USB refused by the desktop (503): USB/IP is not available "
            "in this desktop: the vhci-hcd kernel module is not loaded"
        )
        # the session goes on: the desktop is drawn, the client still runs, connected
        shot = wait_for_xterm(xvfb.display, 90)
        assert xterm_visible(shot), client.output()
        assert client.proc.poll() is None
        wait_for(lambda: user_state(engine, vm_id) == "connected", 30, "user_state connected")
        print(refusal)
    finally:
        client.close()
        xvfb.close()
