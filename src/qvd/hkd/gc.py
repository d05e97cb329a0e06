"""The node's garbage collector: storage nothing will use again.

What goes, and why (each removal carries its reason):
- ``images/.upload-*`` (an upload or staging import that died) and
  ``basefs/untar-*`` (an unpack that died), once untouched for
  ``internal.hkd.gc.grace`` seconds; an ``untar-<pid>-…`` whose unpacking process
  still lives is never touched. ``deleteme-*`` (a removal that was cut short) likewise.
- ``basefs/<di_id>-<name>/``, the unpacked base of a DI deleted from the database, when
  no VM of this node runs (or is starting) with it: removed under the DI's unpack lock
  (``basefs/lock.<di_id>``, the lock the unpacker takes), skipped while it is held.
- ``overlayfs/<di_id>-<vm_id>-overlayfs/``, the layer of a VM deleted from the
  database, when the backend runs nothing for that VM, with its file system image
  ``overlayfs/.images/<layer>.ext4`` (an image alone too); a layer still loop-mounted
  (an HKD killed before its cleanup) is unmounted first: nothing can use it any more.
- ``homefs/<key>/`` and its file system image ``homefs/.images/<key>.ext4`` (see
  ``qvd.hkd.backends.homefs``), the home of a deleted VM (``<vm_id>-fs``) or user (``<login>``),
  never while it is mounted:
  only with ``internal.hkd.gc.home_retention`` ≥ 0 (days; the default, -1, keeps them:
  an administrator who deletes a VM or user by mistake must not lose the user's files
  at once). The first pass that finds a home orphaned leaves a marker
  ``homefs/.orphaned-<key>`` beside it; the home goes once the marker is that old,
  and the marker goes if the home is used again.
- KVM: ``overlays/<di_id>-<vm_id>-overlay.qcow2``, the root of a VM deleted from the
  database, when the backend runs nothing for it; ``homes/<vm_id>-data.qcow2``, the home
  disk of a deleted VM, with the same retention and marker (``homes/.orphaned-<file>``)
  as an LXC home.

Nothing is removed on a guess: a name that does not parse is left alone. Removal is a
rename to ``deleteme-…`` (atomic, so nothing can use it afterwards) then a recursive
delete. ``collect(..., dry_run=True)`` says what would go and removes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, select

from qvd.config import Config
from qvd.db.models import Di, User, Vm, VmRuntime
from qvd.db.session_history import PRUNE_BATCH, prune_history
from qvd.hkd.backends import Backend
from qvd.hkd.backends.homefs import HomeError, home_image, release_home
from qvd.hkd.pidlock import pid_alive

__all__ = [
    "DbFacts",
    "GcSettings",
    "Removal",
    "collect",
    "gc_loop",
    "load_facts",
    "plan",
    "run_once",
]

log = logging.getLogger("qvd.hkd.gc")

_BASE = re.compile(r"^([0-9]{1,12})-.+$")
_LAYER = re.compile(r"^([0-9]{1,12})-([0-9]{1,12})-overlayfs$")
_LAYER_IMAGE = re.compile(r"^([0-9]{1,12})-([0-9]{1,12})-overlayfs\.ext4$")
_VM_HOME = re.compile(r"^([0-9]{1,12})-fs$")
_KVM_OVERLAY = re.compile(r"^([0-9]{1,12})-([0-9]{1,12})-overlay\.qcow2$")
_KVM_HOME = re.compile(r"^([0-9]{1,12})-data\.qcow2$")
_UNTAR = re.compile(r"^untar-([0-9]+)-[0-9a-f]+$")
_MARKER = ".orphaned-"
_BUSY_STATES = frozenset({"starting", "running", "stopping", "zombie", "debugging"})


@dataclass(frozen=True, slots=True)
class Removal:
    path: Path
    reason: str
    di_id: int | None = None  # a base: removed under this DI's unpack lock
    vm_id: int | None = None  # a layer: removed only while nothing runs for this VM


@dataclass(frozen=True, slots=True, kw_only=True)
class GcSettings:
    images: Path
    basefs: Path
    overlayfs: Path
    homefs: Path
    overlays: Path  # KVM roots (qcow2)
    homes: Path  # KVM home disks (qcow2)
    grace: float  # seconds a leftover stays untouched before it goes
    home_retention: float | None  # seconds an orphaned home is kept; None: forever
    delay: float  # seconds between two passes of the HKD (0: never)

    @classmethod
    def from_config(cls, config: Config) -> GcSettings:
        days = config.get_float("internal.hkd.gc.home_retention")
        return cls(
            images=config.get_path("path.storage.images"),
            basefs=config.get_path("path.storage.basefs"),
            overlayfs=config.get_path("path.storage.overlayfs"),
            homefs=config.get_path("path.storage.homefs"),
            overlays=config.get_path("path.storage.overlays"),
            homes=config.get_path("path.storage.homes"),
            grace=config.get_float("internal.hkd.gc.grace"),
            home_retention=None if days < 0 else days * 86400,
            delay=config.get_float("internal.hkd.gc.delay"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DbFacts:
    """What the database says is still wanted."""

    di_ids: frozenset[int]
    vm_ids: frozenset[int]
    logins: frozenset[str]
    busy_di_ids: frozenset[int]  # DIs of VMs not stopped on this node


def load_facts(conn: Connection, host_id: int | None) -> DbFacts:
    busy = select(VmRuntime.current_di_id).where(
        VmRuntime.vm_state.in_(_BUSY_STATES), VmRuntime.current_di_id.is_not(None)
    )
    if host_id is not None:
        busy = busy.where(VmRuntime.host_id == host_id)
    return DbFacts(
        di_ids=frozenset(conn.scalars(select(Di.id))),
        vm_ids=frozenset(conn.scalars(select(Vm.id))),
        logins=frozenset(conn.scalars(select(User.login))),
        busy_di_ids=frozenset(i for i in conn.scalars(busy) if i is not None),
    )


def _entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as it:
        yield from it


def _age(entry: os.DirEntry[str], now: float) -> float:
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0.0


def plan(
    settings: GcSettings, facts: DbFacts, alive: Callable[[int], bool], now: float
) -> list[Removal]:
    """What one pass would remove (nothing is touched; ``alive(vm_id)`` asks the
    backend whether it runs anything for a VM)."""
    out: list[Removal] = []
    grace = settings.grace
    for entry in _entries(settings.images):
        if entry.name.startswith(".upload-") and _age(entry, now) > grace:
            out.append(Removal(Path(entry.path), f"an upload left over, untouched {grace:.0f} s"))
    for folder in (settings.basefs, settings.overlayfs, settings.overlays, settings.homes):
        for entry in _entries(folder):
            if entry.name.startswith("deleteme-") and _age(entry, now) > grace:
                out.append(Removal(Path(entry.path), "a removal that was cut short"))
    in_use = {
        int(m.group(1))
        for e in _entries(settings.overlayfs)
        if (m := _LAYER.match(e.name)) is not None and alive(int(m.group(2)))
    }
    for entry in _entries(settings.basefs):
        untar = _UNTAR.match(entry.name)
        if untar is not None:
            if not pid_alive(int(untar.group(1))) and _age(entry, now) > grace:
                out.append(Removal(Path(entry.path), "an unpack whose process is gone"))
            continue
        base = _BASE.match(entry.name)
        if base is None or not entry.is_dir(follow_symlinks=False):
            continue
        di_id = int(base.group(1))
        if di_id not in facts.di_ids and di_id not in facts.busy_di_ids | in_use:
            out.append(Removal(Path(entry.path), f"DI {di_id} is deleted", di_id=di_id))
    for entry in _entries(settings.overlayfs):
        layer = _LAYER.match(entry.name)
        if layer is None:
            continue
        vm_id = int(layer.group(2))
        if vm_id not in facts.vm_ids and not alive(vm_id):
            out.append(Removal(Path(entry.path), f"VM {vm_id} is deleted", vm_id=vm_id))
    for entry in _entries(settings.overlayfs / ".images"):
        image = _LAYER_IMAGE.match(entry.name)
        if image is None or (settings.overlayfs / entry.name[: -len(".ext4")]).exists():
            continue  # goes with its layer
        vm_id = int(image.group(2))
        if vm_id not in facts.vm_ids and not alive(vm_id):
            out.append(Removal(Path(entry.path), f"VM {vm_id} is deleted", vm_id=vm_id))
    for entry in _entries(settings.overlays):
        root = _KVM_OVERLAY.match(entry.name)
        if root is None or not entry.is_file(follow_symlinks=False):
            continue
        vm_id = int(root.group(2))
        if vm_id not in facts.vm_ids and not alive(vm_id):
            out.append(Removal(Path(entry.path), f"VM {vm_id} is deleted", vm_id=vm_id))
    out += _orphaned_homes(settings, facts, alive, now)
    return out


def _homes(settings: GcSettings, facts: DbFacts) -> Iterator[tuple[Path, bool, int | None]]:
    """Every home of this node: (path, still wanted, VM id if it is a VM's home). LXC
    homes are folders of ``homefs`` (a VM's or a login's), KVM homes are disk files of
    ``homes`` (a VM's)."""
    for entry in _entries(settings.homefs):
        if entry.name.startswith((".", "deleteme-")) or not entry.is_dir(follow_symlinks=False):
            continue
        wanted, vm_id = _home_owner(entry.name, facts)
        yield Path(entry.path), wanted, vm_id
    for entry in _entries(settings.homes):
        disk = _KVM_HOME.match(entry.name)
        if disk is None or not entry.is_file(follow_symlinks=False):
            continue
        vm_id = int(disk.group(1))
        yield Path(entry.path), vm_id in facts.vm_ids, vm_id


def _marker(home: Path) -> Path:
    return home.with_name(f"{_MARKER}{home.name}")


def _home_owner(key: str, facts: DbFacts) -> tuple[bool, int | None]:
    """(still wanted, VM id if it is a VM's home)."""
    vm_home = _VM_HOME.match(key)
    if vm_home is not None:
        vm_id = int(vm_home.group(1))
        return vm_id in facts.vm_ids, vm_id
    return key in facts.logins, None


def _orphaned_homes(
    settings: GcSettings, facts: DbFacts, alive: Callable[[int], bool], now: float
) -> list[Removal]:
    if settings.home_retention is None:
        return []
    out: list[Removal] = []
    for home, wanted, vm_id in _homes(settings, facts):
        if wanted or (vm_id is not None and alive(vm_id)):
            continue
        try:
            since = _marker(home).stat().st_mtime
        except FileNotFoundError:
            continue  # marked by ``collect``; it goes after the retention
        if now - since > settings.home_retention:
            days = settings.home_retention / 86400
            out.append(Removal(home, f"orphaned home kept {days:g} days", vm_id=vm_id))
    return out


def _mark_orphaned_homes(
    settings: GcSettings, facts: DbFacts, alive: Callable[[int], bool]
) -> None:
    """Start (or stop) the retention clock of each orphaned home."""
    if settings.home_retention is None:
        return
    homes = {home: (wanted, vm_id) for home, wanted, vm_id in _homes(settings, facts)}
    for folder in (settings.homefs, settings.homes):
        for entry in _entries(folder):
            if entry.name.startswith(_MARKER):
                owner = homes.get(folder / entry.name[len(_MARKER) :])
                if owner is None or owner[0]:
                    Path(entry.path).unlink(missing_ok=True)
    for home, (wanted, vm_id) in homes.items():
        if not wanted and not (vm_id is not None and alive(vm_id)):
            marker = _marker(home)
            if not marker.exists():
                marker.touch()
                log.info("home %s is orphaned: kept until the retention ends", home.name)


@contextlib.contextmanager
def _unpack_lock(basefs: Path, di_id: int) -> Iterator[bool]:
    """The DI's unpack lock, taken without waiting: True when held."""
    path = basefs / f"lock.{di_id}"
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)  # the file stays: unlinking a lock file races


def _remove(path: Path) -> None:
    doomed = path.with_name(f"deleteme-{path.name}-{secrets.token_hex(3)}")
    try:
        path.rename(doomed)
    except FileNotFoundError:
        return
    if doomed.is_dir() and not doomed.is_symlink():
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        doomed.unlink(missing_ok=True)


def _execute(removal: Removal, settings: GcSettings, alive: Callable[[int], bool]) -> bool:
    if removal.vm_id is not None and alive(removal.vm_id):
        return False  # started since the plan
    if removal.di_id is not None:
        with _unpack_lock(settings.basefs, removal.di_id) as held:
            if not held:
                return False  # being unpacked right now
            _remove(removal.path)
            return True
    if removal.path.parent == settings.homefs:
        if os.path.ismount(removal.path):
            return False  # mounted: something still uses it
        _remove(removal.path)
        image = home_image(removal.path)
        if image.exists():
            _remove(image)
        _marker(removal.path).unlink(missing_ok=True)
        return True
    if removal.path.parent == settings.homes:
        _remove(removal.path)  # a KVM home disk: its VM runs nothing (checked above)
        _marker(removal.path).unlink(missing_ok=True)
        return True
    if removal.path.parent == settings.overlayfs and _LAYER.match(removal.path.name):
        try:  # the VM is deleted and runs nothing: a mount left by a killed HKD
            release_home(removal.path)
        except HomeError as exc:
            log.warning("gc: %s stays: %s", removal.path, exc)
            return False
        _remove(removal.path)
        image = home_image(removal.path)
        if image.exists():
            _remove(image)
        return True
    _remove(removal.path)
    return True


def collect(
    settings: GcSettings,
    facts: DbFacts,
    alive: Callable[[int], bool],
    *,
    dry_run: bool,
    now: float | None = None,
) -> list[Removal]:
    """One pass: what was removed (or, with ``dry_run``, what would be; nothing is
    touched then, not even the orphaned homes' markers)."""
    now = time.time() if now is None else now
    planned = plan(settings, facts, alive, now)
    if dry_run:
        return planned
    done = [r for r in planned if _execute(r, settings, alive)]
    for removal in done:
        log.info("gc: removed %s (%s)", removal.path, removal.reason)
    _mark_orphaned_homes(settings, facts, alive)
    return done


def run_once(
    config: Config, engine: Engine, backend: Backend, host_id: int | None, *, dry_run: bool
) -> list[Removal]:
    """One pass over this node's storage with the database's current view."""
    settings = GcSettings.from_config(config)
    with engine.begin() as conn:
        facts = load_facts(conn, host_id)
    return collect(settings, facts, backend.is_alive, dry_run=dry_run)


HISTORY_BATCHES = 20  # session history batches (of PRUNE_BATCH rows) one pass deletes


def gc_loop(
    config: Config,
    engine: Engine,
    backend: Backend,
    host_id: int,
    stop: threading.Event,
    live: Callable[[], Config] | None = None,
) -> None:
    """The HKD's collector thread: a pass every ``internal.hkd.gc.delay`` seconds until
    ``stop``; a failed pass is logged and tried again at the next. The session
    history's retention is read from ``live()`` (the database's rows) at each pass."""
    delay = GcSettings.from_config(config).delay
    while delay > 0 and not stop.wait(delay):
        try:
            run_once(config, engine, backend, host_id, dry_run=False)
        except Exception:
            log.exception("gc: the pass failed; next in %.0f s", delay)
        try:
            prune_session_history(live() if live is not None else config, engine, stop)
        except Exception:
            log.exception("gc: pruning the session history failed; next in %.0f s", delay)


def prune_session_history(
    config: Config,
    engine: Engine,
    stop: threading.Event,
    *,
    max_batches: int = HISTORY_BATCHES,
    batch: int = PRUNE_BATCH,
) -> int:
    """Delete the session history older than ``session.history.retention.days`` (0:
    keep it), one bounded batch per transaction, at most ``max_batches`` a pass (the
    next pass goes on); how many rows went."""
    days = config.get_int("session.history.retention.days")
    removed = 0
    for _ in range(max_batches):
        if stop.is_set():
            break
        with engine.begin() as conn:
            count = prune_history(conn, days, batch)
        removed += count
        if count < batch:
            break
    if removed:
        log.info("gc: %d session history rows older than %d days removed", removed, days)
    return removed
