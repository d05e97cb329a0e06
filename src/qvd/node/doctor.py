"""``qvd doctor``: what a node has, what it lacks, and what to do about it.

Two halves, as everywhere in the node code: :func:`gather` reads the machine, the
node configuration and the database once into a :class:`Facts` value (I/O at the
edge); each ``check_*`` is a pure function of those facts that returns
:class:`Finding` values (OK / WARN / FAIL, with what to fix). :func:`diagnose` runs
every check; the command prints them and exits non-zero on any FAIL.

Nothing secret is shown: the database is named by ``DatabaseTarget.describe()`` and a
key file by its path only.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from qvd.config import Config

__all__ = [
    "CertFacts",
    "DbFacts",
    "Facts",
    "Finding",
    "Level",
    "check_certificates",
    "check_database",
    "check_kernel",
    "check_network",
    "check_storage",
    "check_time",
    "diagnose",
    "gather",
]

LXC_CONTROLLERS = frozenset({"cpu", "memory", "pids"})
MAX_SKEW_S = 5.0  # clock vs the database's now(): beyond this, timeouts and fencing lie
CERT_SOON = dt.timedelta(days=14)
MIN_FREE_BYTES = 2 * 1024**3  # below: a DI unpack or a few overlays fill the disk
MIN_FREE_FRACTION = 0.05


class Level(Enum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    level: Level
    message: str
    fix: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DbFacts:
    described: str  # DatabaseTarget.describe(): no password
    error: str | None = None  # why it could not be reached
    revision: str | None = None
    head: str | None = None
    skew_s: float | None = None  # this clock minus the database's now()


@dataclass(frozen=True, slots=True, kw_only=True)
class CertFacts:
    role: str  # "l7r", "api"
    cert: Path
    key: Path
    cert_error: str | None = None  # missing, unreadable, not a certificate
    key_error: str | None = None
    key_mode: int | None = None  # permission bits of the key file
    key_uid: int | None = None
    not_after: dt.datetime | None = None
    key_matches: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    hypervisor: str
    filesystems: frozenset[str]
    userns_max: int | None
    cgroup_version: int
    cgroup_controllers: frozenset[str]
    nft: bool
    bridge_module: bool
    kvm_device: bool
    manage_bridge: bool
    bridge: str
    bridge_present: bool
    guard_route: bool
    db: DbFacts
    certs: tuple[CertFacts, ...]
    storage_root: Path
    storage_free: int | None  # bytes; None: the path does not exist
    storage_total: int | None
    image_cache: Path
    image_cache_writable: bool
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


# ---- checks (pure) ------------------------------------------------------------------------
def _either(check: str, ok: bool, good: str, level: Level, bad: str, fix: str) -> Finding:
    """``check``'s OK finding (``good``) when ``ok``, else its ``level`` one (``bad``)."""
    return Finding(check, Level.OK, good) if ok else Finding(check, level, bad, fix)


def check_kernel(f: Facts) -> list[Finding]:
    out: list[Finding] = []
    if f.hypervisor == "lxc":
        missing = sorted(LXC_CONTROLLERS - f.cgroup_controllers)
        out += [
            _either(
                "kernel.overlayfs", "overlay" in f.filesystems, "overlayfs available",
                Level.FAIL, "overlayfs is not available",
                "modprobe overlay (and add it to /etc/modules-load.d)",
            ),
            _either(
                "kernel.userns", f.userns_max is not None and f.userns_max > 0,
                "user namespaces enabled",
                Level.FAIL, "user namespaces are off (desktops run in them)",
                "sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d)",
            ),
            _either(
                "kernel.cgroups", not missing, f"cgroup v{f.cgroup_version}: cpu, memory, pids",
                Level.FAIL,
                f"cgroup v{f.cgroup_version} lacks the controllers {', '.join(missing)}",
                "enable them on the kernel command line (cgroup_enable=…) and reboot",
            ),
        ]  # fmt: skip
    if f.hypervisor == "kvm":
        out.append(
            _either(
                "kernel.kvm",
                f.kvm_device,
                "/dev/kvm is usable",
                Level.WARN,
                "no usable /dev/kvm: VMs run under TCG (slow)",
                "enable virtualisation in the firmware and load kvm_intel/kvm_amd",
            )
        )
    out.append(
        _either(
            "kernel.nftables",
            f.nft,
            "nft present",
            Level.FAIL if f.manage_bridge else Level.WARN,
            "nft is missing: the node cannot filter its desktops' ports",
            "apt-get install nftables",
        )
    )
    return out


def check_network(f: Facts) -> list[Finding]:
    if not f.manage_bridge:
        return [Finding("network.bridge", Level.OK, "the bridge is not managed by the HKD")]
    out: list[Finding] = []
    if not f.bridge_module:
        out.append(
            Finding(
                "network.bridge", Level.FAIL, "the bridge module is not loaded", "modprobe bridge"
            )
        )
    elif f.bridge_present:
        out.append(Finding("network.bridge", Level.OK, f"bridge {f.bridge} is up"))
    else:
        out.append(
            Finding(
                "network.bridge",
                Level.WARN,
                f"bridge {f.bridge} does not exist yet",
                "start the HKD (it creates the bridge), or check vm.network.bridge",
            )
        )
    if f.bridge_present and not f.guard_route:
        out.append(
            Finding(
                "network.guard",
                Level.FAIL,
                "the unreachable guard route of the VM range is missing: traffic to a "
                "stopped desktop's address could leave the node",
                "restart the HKD (it adds the route)",
            )
        )
    elif f.bridge_present:
        out.append(Finding("network.guard", Level.OK, "unreachable guard route present"))
    return out


def check_database(f: Facts) -> list[Finding]:
    db = f.db
    if db.error is not None:
        return [
            Finding(
                "database.reach",
                Level.FAIL,
                db.error if db.described in db.error else f"{db.described}: {db.error}",
                "check database.* in node.conf (or QVD_DATABASE_URL) and that PostgreSQL runs",
            )
        ]
    out = [Finding("database.reach", Level.OK, f"{db.described} answers")]
    if db.revision is None:
        out.append(Finding("database.schema", Level.FAIL, "no QVD schema", "run `qvd db init`"))
    elif db.revision != db.head:
        out.append(
            Finding(
                "database.schema",
                Level.FAIL,
                f"schema at {db.revision}, this software needs {db.head}",
                "run `qvd db upgrade` (or install the matching software)",
            )
        )
    else:
        out.append(Finding("database.schema", Level.OK, f"schema {db.revision} (current)"))
    return out


def check_time(f: Facts, max_skew: float = MAX_SKEW_S) -> list[Finding]:
    skew = f.db.skew_s
    if skew is None:
        return [Finding("time.sync", Level.WARN, "clock not compared (no database)")]
    if abs(skew) > max_skew:
        return [
            Finding(
                "time.sync",
                Level.FAIL,
                f"this clock is {skew:+.1f} s off the database's (more than {max_skew:g} s)",
                "run a time sync service (systemd-timesyncd, chrony) on every node and the "
                "database server",
            )
        ]
    return [Finding("time.sync", Level.OK, f"clock within {abs(skew):.2f} s of the database")]


def check_certificates(f: Facts) -> list[Finding]:
    out: list[Finding] = []
    for c in f.certs:
        name = f"cert.{c.role}"
        if c.cert_error is not None:
            out.append(
                Finding(
                    name,
                    Level.WARN,
                    f"{c.cert}: {c.cert_error}",
                    "the daemon makes a self-signed one at start, or install yours",
                )
            )
            continue
        problems: list[Finding] = []
        if c.key_error is not None:
            problems.append(Finding(name, Level.FAIL, f"{c.key}: {c.key_error}", "install the key"))
        elif c.key_mode is not None and (c.key_mode & 0o077 or c.key_uid != 0):
            problems.append(
                Finding(
                    name,
                    Level.FAIL,
                    f"{c.key} is readable by others (mode {c.key_mode:04o}, uid {c.key_uid})",
                    f"chown root: {c.key} && chmod 600 {c.key}",
                )
            )
        if c.key_matches is False:
            problems.append(
                Finding(name, Level.FAIL, f"{c.key} is not the key of {c.cert}", "install the pair")
            )
        if c.not_after is not None and c.not_after <= f.now:
            problems.append(
                Finding(
                    name,
                    Level.FAIL,
                    f"{c.cert} expired on {c.not_after:%Y-%m-%d}",
                    "renew the certificate",
                )
            )
        elif c.not_after is not None and c.not_after - f.now < CERT_SOON:
            problems.append(
                Finding(
                    name,
                    Level.WARN,
                    f"{c.cert} expires on {c.not_after:%Y-%m-%d}",
                    "renew the certificate soon",
                )
            )
        out += problems or [Finding(name, Level.OK, f"{c.cert}: valid, key matches, key private")]
    return out


def check_storage(f: Facts) -> list[Finding]:
    out: list[Finding] = []
    if f.storage_free is None or f.storage_total is None:
        out.append(
            Finding(
                "storage.free",
                Level.FAIL,
                f"{f.storage_root} does not exist",
                "create it or fix path.storage.root",
            )
        )
    else:
        free_gib = f.storage_free / 1024**3
        low = (
            f.storage_free < MIN_FREE_BYTES or f.storage_free < MIN_FREE_FRACTION * f.storage_total
        )
        out.append(
            _either(
                "storage.free",
                not low,
                f"{f.storage_root}: {free_gib:.1f} GiB free",
                Level.FAIL,
                f"{f.storage_root}: only {free_gib:.2f} GiB free",
                "free space (old DIs: `qvd gc`), or grow the file system",
            )
        )
    out.append(
        _either(
            "storage.image_cache",
            f.image_cache_writable,
            f"{f.image_cache} writable",
            Level.WARN,
            f"{f.image_cache} is missing or not writable",
            f"mkdir -p {f.image_cache} (as root)",
        )
    )
    return out


CHECKS: tuple[Callable[[Facts], list[Finding]], ...] = (
    check_kernel,
    check_network,
    check_database,
    check_time,
    check_certificates,
    check_storage,
)


def diagnose(
    facts: Facts, checks: Sequence[Callable[[Facts], list[Finding]]] = CHECKS
) -> list[Finding]:
    return [finding for check in checks for finding in check(facts)]


# ---- gathering (I/O) ------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _filesystems() -> frozenset[str]:
    text = _read(Path("/proc/filesystems")) or ""
    return frozenset(line.split()[-1] for line in text.splitlines() if line.split())


def _userns_max() -> int | None:
    text = _read(Path("/proc/sys/user/max_user_namespaces"))
    return int(text) if text and text.strip().isdigit() else None


def _cgroups() -> tuple[int, frozenset[str]]:
    v2 = _read(Path("/sys/fs/cgroup/cgroup.controllers"))
    if v2 is not None:
        return 2, frozenset(v2.split())
    enabled = set()
    for line in (_read(Path("/proc/cgroups")) or "").splitlines():
        words = line.split()
        if len(words) == 4 and not line.startswith("#") and words[3] == "1":
            enabled.add(words[0])
    return 1, frozenset(enabled)


def _guard_route(config: Config) -> bool:
    """Whether ``ip route`` shows an unreachable (or blackhole/prohibit) route."""
    import subprocess

    try:
        done = subprocess.run(
            ["ip", "route", "show", "type", "unreachable"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(done.stdout.strip())


def _db_facts(config: Config) -> DbFacts:
    from sqlalchemy import text

    from qvd.db import ConnectionLimits, database_target, limited_target, make_engine, schema_status

    target = database_target(config)
    described = target.describe()
    limits = ConnectionLimits(connect_timeout=5, user_timeout=10.0, statement_timeout=10.0)
    engine = make_engine(limited_target(target, limits), limits=limits, pool_size=1)
    try:
        before = time.time()
        with engine.connect() as conn:
            db_now = conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one()
        after = time.time()
        skew = (before + after) / 2 - float(db_now)
        status = schema_status(engine)
        return DbFacts(described=described, revision=status.current, head=status.head, skew_s=skew)
    except Exception as exc:  # any failure is the finding
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DbFacts(described=described, error=first[:300])
    finally:
        engine.dispose()


def _cert_facts(role: str, cert: Path, key: Path) -> CertFacts:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except FileNotFoundError:
        return CertFacts(role=role, cert=cert, key=key, cert_error="missing")
    except (OSError, ValueError) as exc:
        return CertFacts(role=role, cert=cert, key=key, cert_error=f"unreadable ({exc})")
    not_after = certificate.not_valid_after_utc
    try:
        info = key.stat()
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except FileNotFoundError:
        return CertFacts(role=role, cert=cert, key=key, key_error="missing", not_after=not_after)
    except (OSError, ValueError, TypeError) as exc:
        return CertFacts(
            role=role,
            cert=cert,
            key=key,
            key_error=f"unreadable ({type(exc).__name__})",
            not_after=not_after,
        )
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    matches = private.public_key().public_bytes(enc, fmt) == certificate.public_key().public_bytes(
        enc, fmt
    )
    return CertFacts(
        role=role,
        cert=cert,
        key=key,
        key_mode=stat.S_IMODE(info.st_mode),
        key_uid=info.st_uid,
        not_after=not_after,
        key_matches=matches,
    )


def gather(config: Config) -> Facts:
    """Read this machine, the node configuration and the database once."""
    version, controllers = _cgroups()
    bridge = config.get("vm.network.bridge")
    root = config.get_path("path.storage.root")
    free: int | None = None
    total: int | None = None
    try:
        usage = shutil.disk_usage(root)
        free, total = usage.free, usage.total
    except OSError:
        pass
    cache = config.get_path("path.cache.di")
    kvm = Path("/dev/kvm")
    return Facts(
        hypervisor=config.get("vm.hypervisor"),
        filesystems=_filesystems(),
        userns_max=_userns_max(),
        cgroup_version=version,
        cgroup_controllers=controllers,
        nft=shutil.which("nft") is not None,
        bridge_module=Path("/sys/module/bridge").exists(),
        kvm_device=kvm.exists() and os.access(kvm, os.R_OK | os.W_OK),
        manage_bridge=config.get_bool("vm.network.bridge.manage"),
        bridge=bridge,
        bridge_present=Path("/sys/class/net", bridge, "bridge").exists(),
        guard_route=_guard_route(config),
        db=_db_facts(config),
        certs=(
            _cert_facts(
                "l7r", config.get_path("path.l7r.ssl.cert"), config.get_path("path.l7r.ssl.key")
            ),
            _cert_facts(
                "api", config.get_path("path.api.ssl.cert"), config.get_path("path.api.ssl.key")
            ),
        ),
        storage_root=root,
        storage_free=free,
        storage_total=total,
        image_cache=cache,
        image_cache_writable=cache.is_dir() and os.access(cache, os.W_OK),
    )
