"""``qvd doctor``: the real command on this machine against a throwaway database, and
each FAIL driven by real bad inputs (an expired certificate, a key others can read, a
key of another certificate, a wrong database, a full small tmpfs) or by gathered facts
(a clock skew, missing cgroup controllers)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qvd.db import DATABASE_URL_ENV, DatabaseTarget
from qvd.node.doctor import (
    DbFacts,
    Facts,
    Level,
    _cert_facts,
    check_certificates,
    check_kernel,
    check_storage,
    check_time,
    diagnose,
)
from tests.node.test_cli import qvd, url_of

NOW = dt.datetime.now(dt.UTC)


def _write_pair(dir: Path, *, days: int, name: str = "node") -> tuple[Path, Path]:
    """A self-signed certificate valid until ``days`` from now (negative: expired) and
    its key (root, 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    not_after = NOW + dt.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(NOW, not_after) - dt.timedelta(days=1))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = dir / f"{name}.pem", dir / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def _conf(tmp: Path, cert: Path, key: Path, **extra: str) -> Path:
    (tmp / "storage").mkdir(exist_ok=True)
    (tmp / "cache").mkdir(exist_ok=True)
    values = {
        "nodename": "doc1",
        "vm.network.bridge.manage": "0",
        "path.storage.root": str(tmp / "storage"),
        "path.cache.di": str(tmp / "cache"),
        "path.l7r.ssl.cert": str(cert),
        "path.l7r.ssl.key": str(key),
        "path.api.ssl.cert": str(cert),
        "path.api.ssl.key": str(key),
        **extra,
    }
    conf = tmp / "node.conf"
    conf.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    return conf


def _findings(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    rows = json.loads(result.stdout)["findings"]
    return {r["check"]: (r["level"], r["message"]) for r in rows}


def test_the_real_command_on_this_machine_passes_what_is_there(
    db: DatabaseTarget, tmp_path: Path
) -> None:
    cert, key = _write_pair(tmp_path, days=365)
    conf = _conf(tmp_path, cert, key)
    result = qvd("doctor", "--config", str(conf), "--json", env={DATABASE_URL_ENV: url_of(db)})
    found = _findings(result)
    for check in ("database.reach", "database.schema", "time.sync", "cert.l7r", "cert.api"):
        assert found[check][0] == "OK", (check, found[check])
    assert found["storage.image_cache"][0] == "OK"
    failed = [c for c, (level, _) in found.items() if level == "FAIL"]
    assert result.returncode == (1 if failed else 0), (failed, result.stderr)
    text = qvd("doctor", "--config", str(conf), env={DATABASE_URL_ENV: url_of(db)})
    assert "OK   database.schema: schema" in text.stdout


def test_a_wrong_database_fails_and_shows_no_password(tmp_path: Path) -> None:
    cert, key = _write_pair(tmp_path, days=365)
    conf = _conf(
        tmp_path, cert, key,
        **{"database.host": "/nonexistent-qvd-dir", "database.port": "1",
           "database.password": "very-secret-pw"},
    )  # fmt: skip
    result = qvd("doctor", "--config", str(conf), "--json")
    assert result.returncode == 1
    found = _findings(result)
    assert found["database.reach"][0] == "FAIL"
    assert "/nonexistent-qvd-dir" in found["database.reach"][1]
    assert "very-secret-pw" not in result.stdout + result.stderr
    assert found["time.sync"][0] == "WARN"


def _facts(**changes: object) -> Facts:
    base = Facts(
        hypervisor="lxc",
        filesystems=frozenset({"overlay", "ext4"}),
        userns_max=15000,
        cgroup_version=2,
        cgroup_controllers=frozenset({"cpu", "memory", "pids", "io"}),
        nft=True,
        bridge_module=True,
        kvm_device=False,
        manage_bridge=True,
        bridge="qvdnet",
        bridge_present=True,
        guard_route=True,
        db=DbFacts(described="db", revision="0009", head="0009", skew_s=0.1),
        certs=(),
        storage_root=Path("/var/lib/qvd"),
        storage_free=100 * 1024**3,
        storage_total=200 * 1024**3,
        image_cache=Path("/var/cache/qvd"),
        image_cache_writable=True,
        now=NOW,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_good_facts_are_all_ok() -> None:
    assert {f.level for f in diagnose(_facts())} == {Level.OK}


def test_an_expired_certificate_fails(tmp_path: Path) -> None:
    cert, key = _write_pair(tmp_path, days=-3)
    [finding] = check_certificates(_facts(certs=(_cert_facts("l7r", cert, key),)))
    assert finding.level is Level.FAIL
    assert "expired" in finding.message
    cert, key = _write_pair(tmp_path, days=5, name="soon")
    [finding] = check_certificates(_facts(certs=(_cert_facts("l7r", cert, key),)))
    assert finding.level is Level.WARN
    assert "expires" in finding.message


def test_a_key_others_can_read_or_of_another_certificate_fails(tmp_path: Path) -> None:
    cert, key = _write_pair(tmp_path, days=100)
    os.chmod(key, 0o644)
    [finding] = check_certificates(_facts(certs=(_cert_facts("api", cert, key),)))
    assert finding.level is Level.FAIL
    assert "readable by others" in finding.message
    _other_cert, other_key = _write_pair(tmp_path, days=100, name="other")
    [finding] = check_certificates(_facts(certs=(_cert_facts("api", cert, other_key),)))
    assert finding.level is Level.FAIL
    assert "is not the key of" in finding.message
    missing = _cert_facts("api", tmp_path / "none.pem", key)
    assert check_certificates(_facts(certs=(missing,)))[0].level is Level.WARN


def test_a_clock_off_the_database_fails() -> None:
    [finding] = check_time(_facts(db=DbFacts(described="db", revision="1", head="1", skew_s=-42)))
    assert finding.level is Level.FAIL
    assert "-42.0 s off" in finding.message


def test_missing_kernel_features_fail() -> None:
    bad = _facts(
        filesystems=frozenset({"ext4"}), userns_max=0, cgroup_controllers=frozenset({"cpu"})
    )
    levels = {f.check: f.level for f in check_kernel(bad)}
    assert levels["kernel.overlayfs"] is Level.FAIL
    assert levels["kernel.userns"] is Level.FAIL
    assert levels["kernel.cgroups"] is Level.FAIL
    no_guard = {f.check: f.level for f in diagnose(_facts(guard_route=False))}
    assert no_guard["network.guard"] is Level.FAIL


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_storage_root_fails(tmp_path: Path, small_tmpfs: Path) -> None:
    """A 4 MiB tmpfs as the storage root: below the free-space floor, by real statvfs."""
    cert, key = _write_pair(tmp_path, days=365)
    conf = _conf(tmp_path, cert, key, **{"path.storage.root": str(small_tmpfs)})
    result = qvd("doctor", "--config", str(conf), "--json")
    assert result.returncode == 1
    level, message = _findings(result)["storage.free"]
    assert level == "FAIL"
    assert str(small_tmpfs) in message
    gone = check_storage(_facts(storage_free=None, storage_total=None))
    assert gone[0].level is Level.FAIL
