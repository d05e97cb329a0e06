"""Root inside a desktop tries to become root on the node, against a real container.

Each escape below worked in a privileged container (root in the desktop was host
root); in the user-namespaced desktop every one fails, and the container's root is an
unprivileged host uid."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.hkd.backends.lxc import LxcBackend
from tests.conftest import end_process
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.security.desktops import node_hkd, run_in, start_vm

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(params=["0", "1"], ids=["fuse-off", "fuse-on"])
def fuse(request: pytest.FixtureRequest) -> str:
    """``vm.lxc.fuse`` of the node: with it on (shared folders), the desktop keeps
    CAP_SYS_ADMIN in its own user namespace; every escape must still fail."""
    return str(request.param)


@pytest.fixture
def desktop(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path, fuse: str
) -> Iterator[tuple[LxcBackend, int]]:
    with node_hkd(db, engine, lxc_node, **{"vm.lxc.fuse": fuse}) as hkd:
        backend = hkd.backend
        assert isinstance(backend, LxcBackend)
        vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1, user_storage=16)
        start_vm(engine, hkd, vm_id)
        yield backend, vm_id


def _host_disk() -> tuple[int, int]:
    dev = os.stat("/").st_dev
    return os.major(dev), os.minor(dev)


def test_root_in_the_desktop_is_an_unprivileged_host_uid(
    desktop: tuple[LxcBackend, int],
) -> None:
    backend, vm_id = desktop
    init = backend.lxc.pid(f"qvd-{vm_id}")
    status = Path(f"/proc/{init}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    gids = next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1:]
    ids = backend.user_namespace(vm_id)
    assert ids is not None
    assert ids.start >= 65536
    assert uids == [str(ids.start)] * 4  # real, effective, saved, filesystem: mapped root
    assert gids == [str(ids.start)] * 4
    assert Path(f"/proc/{init}/uid_map").read_text().split() == ["0", str(ids.start), "65536"]
    assert run_in(backend, vm_id, "id -u").out == "0"  # while root inside


def test_no_block_device_of_the_host_disk(desktop: tuple[LxcBackend, int]) -> None:
    backend, vm_id = desktop
    major, minor = _host_disk()
    made = run_in(backend, vm_id, f"mknod /tmp/disk b {major} {minor}")
    assert made.code != 0
    assert "Operation not permitted" in made.out
    assert "No such file" in run_in(backend, vm_id, "head -c 1 /tmp/disk").out
    devices = run_in(backend, vm_id, "ls /dev").out.split()
    assert "null" in devices
    assert not {"vda", "sda", "nvme0n1", "mem", "kmem", "port"} & set(devices)


def test_no_mount_of_proc_sysfs_or_a_new_filesystem(
    desktop: tuple[LxcBackend, int], fuse: str
) -> None:
    backend, vm_id = desktop
    # with FUSE on, the desktop keeps CAP_SYS_ADMIN in its own user namespace: a tmpfs,
    # its own procfs, /proc/sys remounted or a bind of its own root are mounts in its own
    # namespaces (the kernel still refuses what needs the node's capabilities: the
    # kernel-settings test runs after such a remount below); the node's sysfs never
    own_namespace = (
        ()
        if fuse == "1"
        else (
            "mount -t tmpfs none /mnt",
            "mount -t proc proc /mnt",
            "mount -o remount,rw /proc/sys",
            "mount --bind / /mnt",
        )
    )
    for attempt in (
        *own_namespace,
        "mount -t sysfs sysfs /mnt",
        "mount -o remount,rw /sys",
    ):
        tried = run_in(backend, vm_id, attempt)
        assert tried.code != 0, f"{attempt!r} succeeded: {tried.out}"
    if fuse == "0":
        assert "/mnt " not in run_in(backend, vm_id, "cat /proc/mounts").out


def test_no_write_to_kernel_settings(desktop: tuple[LxcBackend, int], fuse: str) -> None:
    backend, vm_id = desktop
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    if fuse == "1":  # it may remount /proc/sys read-write: the kernel still says no
        assert run_in(backend, vm_id, "mount -o remount,rw /proc/sys").code == 0
    for knob, value in (("kernel/core_pattern", "|/tmp/owned"), ("kernel/modprobe", "/tmp/x"),
                        ("vm/drop_caches", "3")):  # fmt: skip
        tried = run_in(backend, vm_id, f"echo '{value}' > /proc/sys/{knob}")
        assert tried.code != 0, f"{knob} written: {tried.out}"
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before


def test_no_module_load_and_no_dev_mem(desktop: tuple[LxcBackend, int]) -> None:
    backend, vm_id = desktop
    # finit_module(fd of any file) and init_module as root: seccomp and the missing
    # CAP_SYS_MODULE refuse them before the kernel looks at the module
    perl = (
        'perl -e \'open(my $f, "<", "/bin/true") or die; my $fd = fileno($f); '
        'my $none = ""; my $image = "x" x 64; my $r = syscall(313, $fd, $none, 0); '
        'print "finit=$r $!\\n"; $r = syscall(175, $image, 64, $none); '
        'print "init=$r $!\\n"\''
    )
    # (on this kernel kind the node itself answers ENOSYS: no module support at all;
    # the desktop's EPERM comes from its seccomp policy, earlier)
    out = run_in(backend, vm_id, perl).out
    assert "finit=-1 Operation not permitted" in out, out
    assert "init=-1 Operation not permitted" in out, out
    mem = run_in(backend, vm_id, "head -c 16 /dev/mem; mknod /tmp/mem c 1 1 && head -c 16 /tmp/mem")
    assert mem.code != 0
    assert "Operation not permitted" in mem.out or "No such file" in mem.out


def test_no_kill_of_a_host_process(desktop: tuple[LxcBackend, int]) -> None:
    backend, vm_id = desktop
    victim = subprocess.Popen(["sleep", "300"])
    try:
        tried = run_in(backend, vm_id, f"kill -9 {victim.pid}")
        assert tried.code != 0
        assert victim.poll() is None, "the host process was killed from the desktop"
    finally:
        end_process(victim)


def test_no_host_file_through_proc_or_a_bind(
    desktop: tuple[LxcBackend, int], tmp_path: Path
) -> None:
    backend, vm_id = desktop
    marker = secrets.token_hex(8)
    secret = tmp_path / "host-secret"
    secret.write_text(marker)
    for path in (f"/proc/1/root{secret}", f"{secret}", f"/proc/1/cwd{secret}",
                 f"/proc/self/root{secret}"):  # fmt: skip
        tried = run_in(backend, vm_id, f"cat {path}")
        assert tried.code != 0
        assert marker not in tried.out
    # the desktop's pid 1 is its own init (the VMA), not the node's
    host_init = Path("/proc/1/comm").read_text().strip()
    assert run_in(backend, vm_id, "cat /proc/1/comm").out != host_init
    # and the node's processes are not in its /proc at all
    assert run_in(backend, vm_id, f"ls -d /proc/{os.getpid()}/root").code != 0
