"""The KVM backend against a real QEMU (TCG) running the stub guest: start, what the
running QEMU looks like (user, sandbox, tap, cgroup, identity), graceful stop, kill,
cleanup, idempotence and adoption by a new backend object. Run under the heavy lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qvd.hkd.backends.base import BackendError
from qvd.hkd.backends.kvm import KvmBackend
from tests.hkd.backends.kvm.kit import qemus_of
from tests.hkd.backends.kvm.node import KvmNode

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[4]


def wait_until(check: object, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def test_start_runs_a_sandboxed_unprivileged_qemu_on_its_tap(kvm_node: KvmNode) -> None:
    backend = kvm_node.backend()
    spec = kvm_node.spec(10001, weight=250, secret="s3cr3t" * 10)
    backend.prepare(spec)
    pid = backend.start(spec)
    assert backend.is_alive(10001)
    assert backend.list_running() == {10001}
    assert backend.status(10001) == "running"
    assert backend.start(spec) == pid  # idempotent: the same QEMU
    backend.prepare(spec)  # on a running VM: its disks are left alone
    status = proc_status(pid)
    qemu_uid = int(status["Uid"].split()[0])
    assert qemu_uid != 0
    assert all(int(u) == qemu_uid for u in status["Uid"].split())
    assert int(status["Seccomp"].strip()) == 2  # -sandbox on: a seccomp filter
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert not any(b"s3cr3t" in word for word in argv)  # the secret is in fw_cfg only
    # read into QEMU's memory at its start (what the guest gets through fw_cfg), then
    # removed: the secret is not left on the node's disk
    assert not (kvm_node.run_kvm / "10001" / "identity.json").exists()
    fw_cfg = argv[argv.index(b"-fw_cfg") + 1].decode()
    assert fw_cfg == f"name=opt/org.qvd/identity,file={kvm_node.run_kvm}/10001/identity.json"
    tap = Path(f"/sys/class/net/{kvm_node.prefix}10001")
    assert (tap / "tun_flags").exists()
    assert (tap / "master").resolve().name == kvm_node.bridge
    assert Path(f"/proc/sys/net/ipv6/conf/{tap.name}/disable_ipv6").read_text().strip() == "1"
    assert backend.cpu_shares(10001) == 250 * 1024 // 100
    assert pid in backend.groups.pids(10001)
    with pytest.raises(BackendError, match="still runs"):
        backend.cleanup(10001)
    assert backend.facts() == {"accel": "tcg", "machine": "pc"}
    backend.kill(10001)
    assert not backend.is_alive(10001)
    backend.kill(10001)  # idempotent
    backend.cleanup(10001)
    backend.cleanup(10001)  # idempotent
    assert kvm_node.leaks() == []
    assert backend.list_leftovers() == set()
    assert (kvm_node.homes / "10001-data.qcow2").is_file()  # the home stays
    assert not list(kvm_node.overlays.iterdir())  # a fresh root goes


def test_stop_powers_the_guest_down(kvm_node: KvmNode) -> None:
    backend = kvm_node.backend()
    spec = kvm_node.spec(10002, home_mib=None)
    backend.prepare(spec)
    backend.start(spec)
    time.sleep(0.5)  # the stub enables its power button first thing
    backend.stop(10002)
    assert wait_until(lambda: not backend.is_alive(10002))
    backend.stop(10002)  # on a dead VM: nothing
    backend.cleanup(10002)
    assert kvm_node.leaks() == []


def test_a_new_backend_adopts_and_ends_a_running_vm(kvm_node: KvmNode) -> None:
    first = kvm_node.backend()
    spec = kvm_node.spec(10003, persistent=True)
    first.prepare(spec)
    pid = first.start(spec)
    second = kvm_node.backend()  # an HKD restarted
    assert second.list_running() == {10003}
    assert second.is_alive(10003)
    assert second.status(10003) == "running"
    assert second.start(spec) == pid
    assert 10003 in second.list_leftovers()
    second.kill(10003)
    assert not first.is_alive(10003)
    second.cleanup(10003)
    assert kvm_node.leaks() == []
    assert [p.name for p in kvm_node.overlays.iterdir()] == ["7-10003-overlay.qcow2"]


def test_a_starter_killed_hard_leaves_a_vm_a_new_backend_adopts(kvm_node: KvmNode) -> None:
    """kill -9 of the process that started the VM (an HKD dying mid-flight): its QEMU
    runs on in its own session; a fresh backend finds it, kills it and leaves nothing."""
    script = (
        "import sys, time\n"
        "from tests.hkd.backends.kvm.node import KvmNode\n"
        "from tests.hkd.backends.kvm.stubguest import StubImageTools, StubBoot\n"
        "from pathlib import Path\n"
        "root, bridge, prefix, image = sys.argv[1:5]\n"
        "boot = StubBoot(Path(root)/'boot'/'vmlinuz', Path(root)/'boot'/'initrd.img', 'x')\n"
        "node = KvmNode(Path(root), bridge, prefix, StubImageTools(boot), Path(image))\n"
        "b = node.backend(); s = node.spec(10004)\n"
        "b.prepare(s); print(b.start(s), flush=True); time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": ":".join(p for p in sys.path if p)}
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(kvm_node.root), kvm_node.bridge, kvm_node.prefix,
         str(kvm_node.image)],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        qemu_pid = int(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    fresh = kvm_node.backend()
    assert fresh.list_running() == {10004}
    assert kvm_node.qemu_pids() == {10004: qemu_pid}
    fresh.kill(10004)
    fresh.cleanup(10004)
    assert kvm_node.leaks() == []
    assert fresh.list_leftovers() == set()
    assert wait_until(lambda: ended(qemu_pid))  # reaped by init (or a zombie until then)


def test_a_qemu_that_cannot_start_leaves_nothing(kvm_node: KvmNode) -> None:
    backend = kvm_node.backend()
    spec = kvm_node.spec(10005)
    backend.prepare(spec)
    kvm_node.tools.boot.kernel.write_bytes(b"not a kernel")
    with pytest.raises(BackendError, match="ended at start"):
        backend.start(spec)
    assert not backend.is_alive(10005)
    backend.cleanup(10005)
    assert kvm_node.leaks() == []


def test_is_alive_ignores_a_pid_file_naming_another_process(kvm_node: KvmNode) -> None:
    backend: KvmBackend = kvm_node.backend()
    run = kvm_node.run_kvm / "10006"
    run.mkdir(parents=True)
    (run / "qemu.pid").write_text(f"{os.getpid()}\n")  # alive, but not our QEMU
    assert not backend.is_alive(10006)
    assert backend.list_running() == set()
    backend.kill(10006)  # must not kill the test
    backend.cleanup(10006)
    assert kvm_node.leaks() == []


def test_a_qemu_that_does_not_answer_in_time_is_ended(kvm_node: KvmNode) -> None:
    backend = kvm_node.backend(**{"internal.hkd.kvm.qmp_timeout": "0"})  # gives up at once
    spec = kvm_node.spec(10007, home_mib=None)
    backend.prepare(spec)
    with pytest.raises(BackendError, match="did not answer on QMP"):
        backend.start(spec)
    assert qemus_of(kvm_node.run_kvm, 10007) == []  # by /proc, pid file or not
    backend.cleanup(10007)
    assert kvm_node.leaks() == []
