"""The storage garbage collector on real directories and a real database: leftovers
and what deleted DIs and VMs left go, what a running VM uses stays, a dry run touches
nothing, homes wait for their retention, and a base being unpacked is never taken."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.config import Config
from qvd.db import DATABASE_URL_ENV, DatabaseTarget
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.backends.homefs import ensure_home, release_home
from qvd.hkd.daemon import Hkd
from qvd.hkd.gc import GcSettings, Removal, collect, load_facts
from tests.hkd.conftest import FakeVma, add_host, add_vm, hkd_config, wait_for

OLD = time.time() - 7200  # older than the grace below (3600 s)


def _old(path: Path) -> Path:
    os.utime(path, (OLD, OLD))
    return path


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@dataclass
class Node:
    config: Config
    storage: Path
    live_vm: int  # in the database, running here with DI live_di
    live_di: int
    ghost_vm: int  # deleted from the database, but the backend still runs it
    gone_vm: int  # deleted, nothing runs
    gone_di: int  # deleted DI (its VM deleted too)
    gone_login: str
    host_id: int

    @property
    def ghost_di(self) -> int:
        """A DI id no row has (the ghost VM's, deleted with it)."""
        return self.gone_di + 1000

    @property
    def settings(self) -> GcSettings:
        return GcSettings.from_config(self.config)

    def alive(self, vm_id: int) -> bool:
        return vm_id in (self.live_vm, self.ghost_vm)

    def facts_and_collect(
        self, engine: Engine, *, dry_run: bool, now: float | None = None
    ) -> list[Removal]:
        with engine.begin() as conn:
            facts = load_facts(conn, self.host_id)
        return collect(self.settings, facts, self.alive, dry_run=dry_run, now=now)


def _delete(engine: Engine, table: str, row_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table} WHERE id = :i"), {"i": row_id})


@pytest.fixture
def node(engine: Engine, run_dir: Path) -> Node:
    config = hkd_config(
        run_dir, **{"internal.hkd.gc.grace": "3600", "internal.hkd.gc.home_retention": "0"}
    )
    storage = config.get_path("path.storage.root")
    host = add_host(engine)
    live_vm, _ = add_vm(engine)
    ghost_vm, _ = add_vm(engine)
    gone_vm, _ = add_vm(engine, login="gone-user")
    with engine.begin() as conn:
        dis = dict(
            conn.execute(text("SELECT v.id, d.id FROM vms v JOIN dis d USING (osf_id)")).all()
        )
        conn.execute(
            text("UPDATE vm_runtimes SET host_id = :h, vm_state = 'running', current_di_id = :d "
                 "WHERE vm_id = :v"),
            {"h": host.id, "d": dis[live_vm], "v": live_vm},
        )  # fmt: skip
    for vm in (ghost_vm, gone_vm):
        _delete(engine, "vms", vm)
    _delete(engine, "dis", dis[gone_vm])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE login = 'gone-user'"))
    n = Node(config, storage, live_vm, dis[live_vm], ghost_vm, gone_vm, dis[gone_vm],
             "gone-user", host.id)  # fmt: skip
    s = n.settings
    for folder in (s.images, s.basefs, s.overlayfs, s.homefs):
        folder.mkdir(parents=True)
    (s.images / f"{n.live_di}-img.tar.zst").write_bytes(b"x")
    (s.images / ".upload-0123456789abcdef").write_bytes(b"dead upload")
    _old(s.images / ".upload-0123456789abcdef")
    (s.images / ".upload-fresh00000000000").write_bytes(b"an upload in progress")
    ghost_di = n.ghost_di
    for di in (n.live_di, n.gone_di, ghost_di):
        (s.basefs / f"{di}-img" / "etc").mkdir(parents=True)
        (s.basefs / f"{di}-img" / "etc" / "hostname").write_text("vm\n")
    (s.basefs / "untar-999999999-0a0b0c0d").mkdir()  # its process is gone
    _old(s.basefs / "untar-999999999-0a0b0c0d")
    (s.basefs / f"untar-{os.getpid()}-0a0b0c0e").mkdir()  # its process lives: an unpack
    _old(s.basefs / f"untar-{os.getpid()}-0a0b0c0e")
    layers = {
        n.live_vm: n.live_di, n.ghost_vm: ghost_di, n.gone_vm: n.gone_di,
    }  # fmt: skip
    for vm, di in layers.items():
        upper = s.overlayfs / f"{di}-{vm}-overlayfs" / "upper"
        upper.mkdir(parents=True)
        (upper / "file").write_text("data")
    for key in (f"{n.live_vm}-fs", f"{n.ghost_vm}-fs", f"{n.gone_vm}-fs", "gone-user"):
        (s.homefs / key).mkdir()
        (s.homefs / key / "thesis.odt").write_text("years of work")
    (s.homefs / ".images").mkdir()
    (s.homefs / ".images" / f"{n.gone_vm}-fs.ext4").write_bytes(b"a home's file system")
    (s.homefs / ".images" / f"{n.live_vm}-fs.ext4").write_bytes(b"a home's file system")
    return n


def _names(removals: list[Removal], storage: Path) -> set[str]:
    return {str(r.path.relative_to(storage)) for r in removals}


def test_a_dry_run_says_what_would_go_and_touches_nothing(engine: Engine, node: Node) -> None:
    before = _tree(node.storage)
    would = node.facts_and_collect(engine, dry_run=True)
    assert _names(would, node.storage) == {
        "images/.upload-0123456789abcdef",
        "basefs/untar-999999999-0a0b0c0d",
        f"basefs/{node.gone_di}-img",
        f"overlayfs/{node.gone_di}-{node.gone_vm}-overlayfs",
    }  # homes: not yet (the first real pass starts their retention clock)
    reasons = {str(r.path.relative_to(node.storage)): r.reason for r in would}
    assert reasons[f"basefs/{node.gone_di}-img"] == f"DI {node.gone_di} is deleted"
    assert _tree(node.storage) == before


def test_a_pass_removes_leftovers_and_keeps_what_runs(engine: Engine, node: Node) -> None:
    s = node.settings
    done = node.facts_and_collect(engine, dry_run=False)
    assert len(done) == 4
    assert not (s.images / ".upload-0123456789abcdef").exists()
    assert (s.images / ".upload-fresh00000000000").exists()
    assert not (s.basefs / "untar-999999999-0a0b0c0d").exists()
    assert (s.basefs / f"untar-{os.getpid()}-0a0b0c0e").exists()
    assert not (s.basefs / f"{node.gone_di}-img").exists()
    # the running VM's base, layer and home are untouched; so is the base and layer of a
    # VM deleted from the database that the backend still runs
    assert (s.basefs / f"{node.live_di}-img/etc/hostname").read_text() == "vm\n"
    assert (s.overlayfs / f"{node.live_di}-{node.live_vm}-overlayfs/upper/file").exists()
    assert (s.homefs / f"{node.live_vm}-fs/thesis.odt").exists()
    ghost_di = node.ghost_di
    assert (s.basefs / f"{ghost_di}-img").exists()
    assert (s.overlayfs / f"{ghost_di}-{node.ghost_vm}-overlayfs/upper/file").exists()
    assert not (s.overlayfs / f"{node.gone_di}-{node.gone_vm}-overlayfs").exists()
    assert not any(p.name.startswith("deleteme-") for p in s.basefs.iterdir())
    # orphaned homes are marked, not removed, by the first pass
    assert (s.homefs / f"{node.gone_vm}-fs/thesis.odt").exists()
    assert (s.homefs / f".orphaned-{node.gone_vm}-fs").exists()
    assert (s.homefs / ".orphaned-gone-user").exists()
    assert not (s.homefs / f".orphaned-{node.ghost_vm}-fs").exists()  # it still runs
    # the next pass after the retention (0 days here) removes them, and only them
    later = node.facts_and_collect(engine, dry_run=False, now=time.time() + 10)
    assert _names(later, node.storage) == {f"homefs/{node.gone_vm}-fs", "homefs/gone-user"}
    assert sorted(p.name for p in s.homefs.iterdir()) == sorted([
        f"{node.live_vm}-fs", f"{node.ghost_vm}-fs", ".images",
    ])  # fmt: skip
    assert [p.name for p in (s.homefs / ".images").iterdir()] == [f"{node.live_vm}-fs.ext4"]


def test_homes_are_kept_by_default(engine: Engine, node: Node) -> None:
    node.config = node.config.with_overrides({"internal.hkd.gc.home_retention": "-1"})
    for now in (None, time.time() + 86400 * 3650):
        node.facts_and_collect(engine, dry_run=False, now=now)
    homes = sorted(p.name for p in node.settings.homefs.iterdir())
    assert homes == sorted(
        [f"{node.live_vm}-fs", f"{node.ghost_vm}-fs", f"{node.gone_vm}-fs", "gone-user", ".images"]
    )


def test_a_base_being_unpacked_is_not_taken(engine: Engine, node: Node) -> None:
    s = node.settings
    with open(s.basefs / f"lock.{node.gone_di}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as LxcBackend.ensure_base holds it
        done = node.facts_and_collect(engine, dry_run=False)
    assert f"basefs/{node.gone_di}-img" not in _names(done, node.storage)
    assert (s.basefs / f"{node.gone_di}-img/etc/hostname").exists()


@pytest.mark.slow
def test_qvd_gc_dry_run_and_run(
    engine: Engine, node: Node, db: DatabaseTarget, run_dir: Path
) -> None:
    """``qvd gc --dry-run`` prints what would go and why; ``qvd gc`` removes it."""
    p = db.params
    url = f"postgresql://{p['user']}@/{p['dbname']}?host={p['host']}&port={p['port']}"
    conf = run_dir / "node.conf"
    conf.write_text(
        f"nodename = node1\nvm.hypervisor = lxc\npath.run = {run_dir / 'node1'}\n"
        f"path.storage.root = {node.storage}\ninternal.hkd.gc.grace = 3600\n"
    )
    env = {**os.environ, DATABASE_URL_ENV: url}
    env.pop("QVD_CONFIG", None)

    def qvd(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "qvd", "gc", "--config", str(conf), *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120,
                              check=False)  # fmt: skip

    before = _tree(node.storage)
    dry = qvd("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        f"would remove {node.storage}/basefs/{node.gone_di}-img: DI {node.gone_di} is deleted"
        in dry.stdout
    )
    assert _tree(node.storage) == before
    real = qvd()
    assert real.returncode == 0, real.stderr
    assert not (node.settings.basefs / f"{node.gone_di}-img").exists()


def test_the_hkd_runs_the_collector(
    db: DatabaseTarget, engine: Engine, node: Node, run_dir: Path
) -> None:
    """With ``internal.hkd.gc.delay`` set, the running HKD collects on its own: a dead
    upload goes, the running VM's files stay."""
    config = node.config.with_overrides({"internal.hkd.gc.delay": "0.2"})
    hkd = Hkd(config, backend=FakeBackend(), vma=FakeVma(), target=db)
    hkd.start()
    try:
        dead = node.settings.images / ".upload-0123456789abcdef"
        wait_for(lambda: not dead.exists(), 30, "the collector removed the dead upload")
    finally:
        hkd.stop()
    s = node.settings
    assert (s.basefs / f"{node.live_di}-img/etc/hostname").exists()
    assert (s.homefs / f"{node.live_vm}-fs/thesis.odt").exists()


def test_a_deleted_vms_mounted_upper_and_lone_images_go(
    engine: Engine, node: Node, root_only: None
) -> None:
    """An HKD killed before its cleanup leaves a deleted VM's bounded upper mounted:
    the collector unmounts it, then removes it and its image; an image whose layer is
    gone goes too, a live VM's image stays."""
    s = node.settings
    layer = s.overlayfs / f"{node.gone_di}-{node.gone_vm}-overlayfs"
    shutil.rmtree(layer)
    ensure_home(layer, 16)  # the way LxcBackend bounds an upper
    images = s.overlayfs / ".images"
    lone = images / f"{node.gone_di}-{node.gone_vm + 7}-overlayfs.ext4"
    live = images / f"{node.live_di}-{node.live_vm}-overlayfs.ext4"
    for path in (lone, live):
        path.write_bytes(b"an upper's file system")
    try:
        done = node.facts_and_collect(engine, dry_run=False)
    finally:
        if os.path.ismount(layer):
            release_home(layer)
    assert {f"overlayfs/{layer.name}", f"overlayfs/.images/{lone.name}"} <= _names(
        done, node.storage
    )
    assert not layer.exists()
    assert f" {layer} " not in Path("/proc/self/mounts").read_text()
    assert sorted(p.name for p in images.iterdir()) == [live.name]


def test_kvm_roots_and_home_disks_of_deleted_vms_go(engine: Engine, node: Node) -> None:
    """The KVM backend's files: the qcow2 root of a deleted VM goes at once (unless the
    backend still runs the VM), its home disk after the retention like an LXC home; the
    files of a VM that exists stay."""
    s = node.settings
    for folder in (s.overlays, s.homes):
        folder.mkdir(parents=True)
    for vm, di in ((node.live_vm, node.live_di), (node.ghost_vm, node.ghost_di),
                   (node.gone_vm, node.gone_di)):  # fmt: skip
        (s.overlays / f"{di}-{vm}-overlay.qcow2").write_bytes(b"a root")
        (s.homes / f"{vm}-data.qcow2").write_bytes(b"a home disk")
    (s.homes / "notes.txt").write_text("not ours: a name that does not parse stays")
    first = node.facts_and_collect(engine, dry_run=False)
    assert f"overlays/{node.gone_di}-{node.gone_vm}-overlay.qcow2" in _names(first, node.storage)
    assert sorted(p.name for p in s.overlays.iterdir()) == sorted([
        f"{node.live_di}-{node.live_vm}-overlay.qcow2",
        f"{node.ghost_di}-{node.ghost_vm}-overlay.qcow2",
    ])  # fmt: skip
    assert (s.homes / f"{node.gone_vm}-data.qcow2").exists()  # marked, kept for now
    assert (s.homes / f".orphaned-{node.gone_vm}-data.qcow2").exists()
    assert not (s.homes / f".orphaned-{node.ghost_vm}-data.qcow2").exists()  # it runs
    later = node.facts_and_collect(engine, dry_run=False, now=time.time() + 10)
    assert f"homes/{node.gone_vm}-data.qcow2" in _names(later, node.storage)
    assert sorted(p.name for p in s.homes.iterdir()) == sorted([
        f"{node.live_vm}-data.qcow2", f"{node.ghost_vm}-data.qcow2", "notes.txt",
    ])  # fmt: skip
