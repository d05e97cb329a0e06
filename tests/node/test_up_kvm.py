"""`qvd up --hypervisor kvm` (``vm.hypervisor = kvm``): the all-in-one node builds (or reuses) the
demo image as a qcow2, boots the demo desktop under TCG with a progress line before it
says it is up, and its printed client command shows that desktop, through the same
client as LXC. Stopping the node stops the guest and leaves no QEMU behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qvd.config import load_config
from tests.e2e.kvmnode import qemu_argv
from tests.node.test_up import (
    READY,
    _end_started_processes,
    _started,
    node_conf,
    read_until,
    see_the_desktop,
    stop,
)

__all__ = ["_end_started_processes", "node_conf"]


def start_up_kvm(conf: Path) -> subprocess.Popen[str]:
    """`qvd up --hypervisor kvm` on ``conf`` (ended by the autouse fixture of test_up)."""
    env = {k: v for k, v in os.environ.items() if k not in {"QVD_CONFIG", "QVD_DATABASE_URL"}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qvd", "up", "--config", str(conf), "--hypervisor", "kvm"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    _started.append(proc)
    return proc


def qemus_under(root: Path) -> list[int]:
    """PIDs of QEMU processes whose command line names a file under ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = qemu_argv(int(entry.name))
            except OSError:
                continue
            if argv and argv[0].endswith("qemu-system-x86_64") and str(root) in " ".join(argv):
                found.append(int(entry.name))
    return found


@pytest.mark.timeout(1500)  # a new machine builds the qcow2 test image first
def test_up_with_kvm_boots_the_demo_desktop_and_shows_it(
    node_conf: Path, tmp_path: Path, evidence_dir: Path, test_image_qcow2: Path
) -> None:
    with node_conf.open("a") as conf:
        conf.write("vm.kvm.accel = tcg\n")  # what auto picks here, said outright
    config = load_config(node_conf)
    root = config.get_path("path.storage.root")
    proc = start_up_kvm(node_conf)
    try:
        lines = read_until(proc, "Stop with Ctrl-C", timeout=600)
    except BaseException:
        proc.kill()
        raise
    text = "\n".join(lines)
    assert READY in text
    assert "disk image 'test' (qcow2): building it or reusing the cached one" in text
    image = Path(
        next(line for line in lines if line.startswith("  demo disk image: ")).split(": ")[1]
    )
    assert image.suffix == ".qcow2"
    assert image.name == test_image_qcow2.name  # the same cached build as the suite's
    assert "booting the demo desktop" in text
    assert "accel=tcg" in text
    assert "the demo desktop is running" in text, text
    assert text.index("the demo desktop is running") < text.index(READY)
    assert f"VMs on bridge {config.get('vm.network.bridge')} (kvm)" in text
    # how to let desktops out, one line of the summary (off by default)
    assert "  egress:   off (desktops reach nothing beyond this node)" in text
    assert "`vm.network.egress.enable = 1` and `vm.network.egress.uplink = <interface>`" in text
    (running,) = qemus_under(root)

    client_line = next(line for line in lines if "qvd-client --host" in line).strip()
    see_the_desktop(client_line, tmp_path / "home", evidence_dir)

    code, out = stop(proc)
    assert code == 0, out
    assert "node daemon stopped" in out
    assert not Path(f"/proc/{running}").exists()
    assert qemus_under(root) == []
    assert list(config.get_path("path.storage.overlays").glob("*.qcow2")) == []
