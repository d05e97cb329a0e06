"""The HKD with the real LXC backend: containers from the `test` image, the real VMA,
a private bridge and firewall, a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, Listener
from qvd.hkd.backends.homefs import home_image, release_home
from qvd.hkd.backends.lxc import LxcBackend
from qvd.hkd.daemon import Hkd
from tests.hkd.conftest import add_host, command, runtime, state_of, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm, leaks
from tests.imagefile.test_tarcheck import entry_member, file_member, make_image

pytestmark = pytest.mark.timeout(900)  # the first run on a machine builds the test image


@pytest.fixture
def node_hkd(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode
) -> Iterator[tuple[Hkd, LxcNode]]:
    add_host(engine, lxc_node.name, lxc_node.host_address)
    hkd = Hkd(
        lxc_node.config(),
        target=db,
    )  # fmt: skip
    hkd.start()
    try:
        yield hkd, lxc_node
    finally:
        if not hkd.wait(0):
            hkd.stop()


def wait_running(engine: Engine, *vm_ids: int) -> None:
    for vm_id in vm_ids:
        wait_for(lambda v=vm_id: state_of(engine, v) == "running", 60, f"VM {vm_id} running")  # type: ignore[misc]


def attach(backend: LxcBackend, vm_id: int, script: str) -> str:
    done = subprocess.run(
        ["lxc-attach", "-P", str(backend.layout.lxcpath), "-n", f"qvd-{vm_id}", "--",
         "sh", "-c", script],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout


def test_start_and_stop_a_container(
    db: DatabaseTarget, engine: Engine, node_hkd: tuple[Hkd, LxcNode], test_image: Path
) -> None:
    hkd, node = node_hkd
    assert hkd.host is not None
    vm_id, _ = add_lxc_vm(engine, node, test_image, 1)
    seen: list[str] = []
    with Listener(db, ["vm_changed"]) as listener:
        command(engine, vm_id, "start", hkd.host.id)
        deadline = time.monotonic() + 60
        while "running" not in seen and time.monotonic() < deadline:
            for note in listener.wait(0.5):
                state = note.payload["vm_state"]
                if note.payload["vm_id"] != vm_id or state in seen[-1:]:
                    continue
                if seen or state != "stopped":  # the command itself is announced too
                    seen.append(state)
        assert seen == ["starting", "running"], seen
        row = runtime(engine, vm_id)
        assert row["vm_address"] == node.vm_address(1)
        assert (row["vm_vma_port"], row["vm_x_port"]) == (3030, 4100)
        assert row["vm_pid"]
        assert row["vma_ok_ts"] is not None
        backend = hkd.backend
        assert isinstance(backend, LxcBackend)
        # the neutral figures (OSF memory, vm.cpus 2, vm.cpu.weight 100) as LXC's knobs
        assert backend.limits(vm_id) == {
            "memory": str(256 * 1024 * 1024), "cpu.shares": "1024",
            "cpu.cfs_quota_us": "200000", "pids.max": "2048",
        }  # fmt: skip
        route = subprocess.run(["ip", "-o", "route", "get", node.vm_address(1)],
                               capture_output=True, text=True, check=False).stdout  # fmt: skip
        assert f" dev {node.bridge} " in route

        command(engine, vm_id, "stop")
        while "stopped" not in seen and time.monotonic() < deadline + 60:
            for note in listener.wait(0.5):
                if note.payload["vm_id"] == vm_id and note.payload["vm_state"] not in seen[-1:]:
                    seen.append(note.payload["vm_state"])
    assert seen == ["starting", "running", "stopping", "stopped"], seen
    row = runtime(engine, vm_id)
    assert row["host_id"] is None
    assert row["vm_address"] is None
    assert leaks(backend, vm_id, node.storage) == []


def test_shared_base_fresh_root_and_persistent_home(
    engine: Engine, node_hkd: tuple[Hkd, LxcNode], test_image: Path
) -> None:
    hkd, node = node_hkd
    assert hkd.host is not None
    backend = hkd.backend
    assert isinstance(backend, LxcBackend)
    first, osf_id = add_lxc_vm(engine, node, test_image, 1, user_storage=64)
    second, _ = add_lxc_vm(engine, node, test_image, 2, osf_id=osf_id)
    for vm_id in (first, second):
        command(engine, vm_id, "start", hkd.host.id)
    wait_running(engine, first, second)
    # one unpacked base, seen by both (through their own idmapped views): same inodes
    bases = [p for p in (node.storage / "basefs").iterdir() if p.is_dir()]
    vma = "usr/lib/qvd/bin/qvd-vma"
    inodes = {str(p.joinpath(vma).stat().st_ino) for p in bases if p.joinpath(vma).exists()}
    seen = {attach(backend, v, f"stat -c %i /{vma}").strip() for v in (first, second)}
    assert len(seen) == 1, "both VMs of one DI must share one unpacked base"
    assert seen <= inodes, "the VMs' /usr/lib/qvd/bin/qvd-vma is the base's own inode"

    attach(backend, first, "echo root > /root/marker; echo home > /home/marker")
    assert attach(backend, first, "cat /root/marker /home/marker").split() == ["root", "home"]
    assert attach(backend, second, "cat /root/marker 2>/dev/null || echo none").strip() == "none"

    command(engine, first, "stop")
    wait_for(lambda: state_of(engine, first) == "stopped", 60, "stopped")
    command(engine, first, "start", hkd.host.id)
    wait_for(lambda: state_of(engine, first) == "running", 60, "running again")
    after = attach(backend, first, "cat /root/marker 2>/dev/null || echo gone; cat /home/marker")
    assert after.split() == ["gone", "home"]


def _vma_pid(backend: LxcBackend, vm_id: int) -> int:
    """The VMA: the child of the container's init."""
    init = backend.lxc.pid(f"qvd-{vm_id}")
    children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    return int(children[0])


def test_a_hung_vma_is_detected_within_ten_seconds(
    engine: Engine, node_hkd: tuple[Hkd, LxcNode], test_image: Path
) -> None:
    hkd, node = node_hkd
    assert hkd.host is not None
    backend = hkd.backend
    assert isinstance(backend, LxcBackend)
    vm_id, _ = add_lxc_vm(engine, node, test_image, 1)
    command(engine, vm_id, "start", hkd.host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", 60, "running")
    pid = _vma_pid(backend, vm_id)
    os.kill(pid, signal.SIGSTOP)  # alive but answering nothing
    try:
        wait_for(lambda: state_of(engine, vm_id) != "running", 10, "the VM to leave running")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "VMA stopped answering" in str(runtime(engine, vm_id)["last_error"])
    wait_for(lambda: state_of(engine, vm_id) == "stopped", 60, "stopped")
    assert leaks(backend, vm_id, node.storage) == []


def test_a_killed_vma_ends_the_vm(
    engine: Engine, node_hkd: tuple[Hkd, LxcNode], test_image: Path
) -> None:
    hkd, node = node_hkd
    assert hkd.host is not None
    backend = hkd.backend
    assert isinstance(backend, LxcBackend)
    vm_id, _ = add_lxc_vm(engine, node, test_image, 1)
    command(engine, vm_id, "start", hkd.host.id)
    wait_for(lambda: state_of(engine, vm_id) == "running", 60, "running")
    os.kill(_vma_pid(backend, vm_id), signal.SIGKILL)
    wait_for(lambda: state_of(engine, vm_id) == "stopped", 10, "stopped")
    assert leaks(backend, vm_id, node.storage) == []


def test_vms_cannot_reach_each_other_or_the_node(
    engine: Engine, node_hkd: tuple[Hkd, LxcNode], test_image: Path
) -> None:
    hkd, node = node_hkd
    assert hkd.host is not None
    backend = hkd.backend
    assert isinstance(backend, LxcBackend)
    first, osf_id = add_lxc_vm(engine, node, test_image, 1)
    second, _ = add_lxc_vm(engine, node, test_image, 2, osf_id=osf_id)
    for vm_id in (first, second):
        command(engine, vm_id, "start", hkd.host.id)
    wait_running(engine, first, second)
    probe = (
        'python3 -c "import socket,sys; s=socket.socket(); s.settimeout(2)\n'
        "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
        "except OSError as e: print('blocked', e)\" "
    )
    # a port that listens on the node's bridge address, to prove the drop is the firewall
    with socket.socket() as listening:
        listening.bind((node.host_address, 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert attach(backend, first, probe + f"{node.host_address} {port}").strip() == (
            "blocked timed out"
        )
    # the other VM's agent listens, but VMs cannot reach each other
    assert attach(backend, first, probe + f"{node.vm_address(2)} 3030").strip() == (
        "blocked timed out"
    )
    destinations = attach(backend, first, "awk 'NR > 1 {print $2}' /proc/net/route").split()
    assert destinations  # the VM network's own route
    assert "00000000" not in destinations  # and no default route: nowhere to go out


def test_a_malicious_disk_image_is_refused(
    engine: Engine, node_hkd: tuple[Hkd, LxcNode], tmp_path: Path
) -> None:
    hkd, node = node_hkd
    assert hkd.host is not None
    evil = make_image(
        tmp_path / "evil.tar.zst",
        entry_member("./", tarfile.DIRTYPE),
        entry_member("./etc", tarfile.SYMTYPE, link="/etc"),
        file_member("./etc/cron.d/owned", b"* * * * * root touch /owned\n"),
    )
    vm_id, _ = add_lxc_vm(engine, node, evil, 1)
    command(engine, vm_id, "start", hkd.host.id)
    wait_for(lambda: runtime(engine, vm_id)["last_error"] is not None, 30, "the refusal")
    row = runtime(engine, vm_id)
    assert (row["vm_state"], row["host_id"]) == ("stopped", None)
    assert "refused: member './etc/cron.d/owned': would be written through the symbolic" in str(
        row["last_error"]
    )
    assert not Path("/etc/cron.d/owned").exists()
    basefs = node.storage / "basefs"
    assert not list(basefs.glob("untar-*"))
    assert not list(basefs.glob(f"*-{evil.name.split('.')[0]}"))


def test_vm_addresses_are_unreachable_while_the_bridge_is_down(
    node_hkd: tuple[Hkd, LxcNode],
) -> None:
    _, node = node_hkd

    def route(address: str) -> str:
        done = subprocess.run(["ip", "-o", "route", "get", address],
                              capture_output=True, text=True, check=False)  # fmt: skip
        return (done.stdout + done.stderr).strip()

    address = node.vm_address(7)
    assert f" dev {node.bridge} " in f"{route(address)} "
    subprocess.run(["ip", "link", "set", node.bridge, "down"], check=True)
    try:
        down = route(address)
        assert "unreachable" in down or "No route to host" in down, down
        assert " dev eth0" not in down  # never out through the default gateway
    finally:
        subprocess.run(["ip", "link", "set", node.bridge, "up"], check=True)


def test_desktops_run_in_user_namespaces_and_share_a_per_login_home(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    """Two VMs of one user, each in its own id range: root in each is a different
    unprivileged host uid, what root writes lands in the upper as that uid, and the
    per-login home (kept with the node's own ids) works in both, across a restart."""
    add_host(engine, lxc_node.name, lxc_node.host_address)
    hkd = Hkd(lxc_node.config(**{"vm.lxc.home.per.user": "1"}), target=db)
    hkd.start()
    try:
        assert hkd.host is not None
        backend = hkd.backend
        assert isinstance(backend, LxcBackend)
        first, osf_id = add_lxc_vm(engine, lxc_node, test_image, 1, user_storage=64)
        second, _ = add_lxc_vm(engine, lxc_node, test_image, 2, osf_id=osf_id)
        with engine.begin() as conn:  # the second VM belongs to the first VM's user
            conn.execute(
                text("UPDATE vms SET user_id = (SELECT user_id FROM vms WHERE id = :a) "
                     "WHERE id = :b"), {"a": first, "b": second},
            )  # fmt: skip
        for vm_id in (first, second):
            command(engine, vm_id, "start", hkd.host.id)
        wait_running(engine, first, second)
        ranges = [backend.user_namespace(v) for v in (first, second)]
        assert None not in ranges
        assert ranges[0] != ranges[1]
        for vm_id, ids in zip((first, second), ranges, strict=True):
            assert ids is not None
            init = backend.lxc.pid(f"qvd-{vm_id}")
            assert Path(f"/proc/{init}").stat().st_uid == ids.start
            attach(backend, vm_id, "echo x > /root/by-root")
            upper = next(backend.layout.overlayfs.glob(f"*-{vm_id}-overlayfs/upper"))
            assert (upper / "root/by-root").stat().st_uid == ids.start
            # removing a directory of the base needs an opaque mark (user.overlay.*)
            assert attach(backend, vm_id, "rm -rf /etc/skel && echo gone").strip() == "gone"
        attach(backend, first, "mkdir -p /home/shared && echo one > /home/shared/f && "
                               "chown -R 1000:1000 /home/shared")  # fmt: skip
        seen = attach(backend, second, "stat -c '%u %g' /home/shared/f; cat /home/shared/f")
        assert seen.split() == ["1000", "1000", "one"]
        command(engine, second, "stop")
        wait_for(lambda: state_of(engine, second) == "stopped", 60, "stopped")
        command(engine, second, "start", hkd.host.id)
        wait_running(engine, second)
        assert attach(backend, second, "cat /home/shared/f").strip() == "one"
        # each start namespace (LXC's monitor lives on in it) holds the VM's own home
        for vm_id in (first, second):
            init = backend.lxc.pid(f"qvd-{vm_id}")
            monitor = Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[1]
            points = [line.split()[4] for line in
                      Path(f"/proc/{monitor}/mountinfo").read_text().splitlines()]  # fmt: skip
            assert str(backend.layout.home_mount(vm_id)) in points
    finally:
        if not hkd.wait(0):
            hkd.stop()
        with engine.begin() as conn:  # a per-login home stays mounted after its VMs
            login = conn.execute(
                text("SELECT u.login FROM users u JOIN vms v ON v.user_id = u.id "
                     "WHERE v.id = :v"), {"v": first},
            ).scalar_one()  # fmt: skip
        lxc_node.clean()
        release_home(lxc_node.backend().layout.home(login))


def _start_namespace_mounts(backend: LxcBackend, vm_id: int) -> list[str]:
    """Mount points of the VM's start namespace (LXC's monitor lives on in it)."""
    init = backend.lxc.pid(f"qvd-{vm_id}")
    monitor = Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[1]
    lines = Path(f"/proc/{monitor}/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines]


def test_a_persistent_bounded_upper_keeps_its_files_across_a_restart(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    """The upper is its own file system (vm.overlay.size): kept with its files across
    a stop and start when persistent, unmounted on the node while the VM is stopped,
    and no start namespace keeps a copy of any VM's layer mount (a kept copy would
    keep that file system alive after the node unmounts it)."""
    add_host(engine, lxc_node.name, lxc_node.host_address)
    extra = {"vm.overlay.persistent": "1", "vm.overlay.size": "64"}
    hkd = Hkd(lxc_node.config(**extra), target=db)
    hkd.start()
    try:
        assert hkd.host is not None
        backend = hkd.backend
        assert isinstance(backend, LxcBackend)
        first, osf_id = add_lxc_vm(engine, lxc_node, test_image, 1)
        second, _ = add_lxc_vm(engine, lxc_node, test_image, 2, osf_id=osf_id)
        for vm_id in (first, second):  # ids recur in the session's shared storage
            for old in backend.layout.layers_of(vm_id):  # another test's kept upper
                home_image(old).unlink(missing_ok=True)
                shutil.rmtree(old)
        for vm_id in (second, first):
            command(engine, vm_id, "start", hkd.host.id)
            wait_running(engine, vm_id)
        layer = next(backend.layout.overlayfs.glob(f"*-{first}-overlayfs"))
        assert os.path.ismount(layer)
        attach(backend, first, "echo kept > /root/kept; sync")
        command(engine, first, "stop")
        wait_for(lambda: state_of(engine, first) == "stopped", 60, "stopped")
        assert not os.path.ismount(layer)
        command(engine, first, "start", hkd.host.id)
        wait_running(engine, first)
        assert attach(backend, first, "cat /root/kept").strip() == "kept"
        df = attach(backend, first, "df -m / | tail -1").split()
        assert int(df[1]) <= 64, df  # the root's size is the upper's bound
        overlayfs = str(backend.layout.overlayfs)
        for vm_id in (first, second):
            points = _start_namespace_mounts(backend, vm_id)
            assert str(backend.layout.layer_mount(vm_id)) in points
            assert not [p for p in points if p.startswith(overlayfs + "/")], points
    finally:
        if not hkd.wait(0):
            hkd.stop()
        lxc_node.clean()
