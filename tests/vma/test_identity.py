"""The fw_cfg identity: read from a fake sysfs tree, validated, installed; a hostile
blob is refused whole and never leaks the secret into a message."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from qvd.vma.auth import SECRET_ENV, SecretStore
from qvd.vma.config import load_vma_config
from qvd.vma.identity import (
    MAX_IDENTITY_BYTES,
    IdentityError,
    install_identity,
    parse_identity,
    read_identity,
    valid_hostname,
)
from qvd.vma.main import take_identity

SECRET = "f" * 64
GOOD = {
    "version": 1,
    "vm_id": 10001,
    "hostname": "desk-1",
    "vma_secret": SECRET,
    "home_serial": "qvd-home",
}


def fw_cfg_tree(root: Path, blob: bytes | None) -> Path:
    """``root`` laid out like /sys/firmware/qemu_fw_cfg; the identity's raw file."""
    entry = root / "qemu_fw_cfg/by_name/opt/org.qvd/identity"
    entry.mkdir(parents=True)
    raw = entry / "raw"
    if blob is not None:
        raw.write_bytes(blob)
    return raw


def blob(**changes: object) -> bytes:
    data = dict(GOOD)
    data.update(changes)
    return json.dumps(data).encode()


def test_a_good_identity_is_read_without_loading_the_module(tmp_path: Path) -> None:
    raw = fw_cfg_tree(tmp_path, blob())
    loads: list[int] = []
    identity = read_identity(raw, load_module=lambda: loads.append(1))
    assert identity is not None
    assert (identity.vm_id, identity.hostname, identity.home_serial) == (
        10001,
        "desk-1",
        "qvd-home",
    )
    assert identity.vma_secret == SECRET
    assert SECRET not in repr(identity)
    assert loads == []


def test_no_home_serial_is_allowed(tmp_path: Path) -> None:
    identity = parse_identity(blob(home_serial=None))
    assert identity.home_serial is None


def test_missing_fw_cfg_loads_the_module_then_reports_none(tmp_path: Path) -> None:
    raw = tmp_path / "qemu_fw_cfg/by_name/opt/org.qvd/identity/raw"
    loads: list[int] = []
    naps: list[float] = []
    found = read_identity(
        raw, load_module=lambda: loads.append(1), device=tmp_path / "no-device", sleep=naps.append
    )
    assert found is None
    assert (loads, naps) == ([1], [])  # no fw_cfg device (a container): no wait


def test_with_the_device_the_driver_is_waited_for(tmp_path: Path) -> None:
    """udev may still be loading qemu_fw_cfg when the VMA starts."""
    device = tmp_path / "QEMU0002:00"
    device.mkdir()
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:  # the driver is bound a moment later
            fw_cfg_tree(tmp_path, blob())

    raw = tmp_path / "qemu_fw_cfg/by_name/opt/org.qvd/identity/raw"
    identity = read_identity(raw, load_module=lambda: None, device=device, wait=30, sleep=nap)
    assert identity is not None
    assert identity.vm_id == 10001
    assert len(naps) == 3


def test_the_wait_for_the_driver_is_bounded(tmp_path: Path) -> None:
    device = tmp_path / "QEMU0002:00"
    device.mkdir()
    raw = tmp_path / "qemu_fw_cfg/by_name/opt/org.qvd/identity/raw"
    assert read_identity(raw, load_module=lambda: None, device=device, wait=0.2) is None


def test_fw_cfg_without_our_entry_is_no_identity(tmp_path: Path) -> None:
    raw = fw_cfg_tree(tmp_path, None)
    assert read_identity(raw, load_module=lambda: None) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b" " * (MAX_IDENTITY_BYTES + 1), "larger than"),
        (blob(hostname="evil\nhost"), "not a valid host name"),
        (blob(hostname="a\x00b"), "not a valid host name"),
        (blob(hostname="-lead"), "not a valid host name"),
        (blob(hostname="x" * 65), "not a valid host name"),
        (blob(hostname=7), "not a string"),
        (blob(vm_id="10001"), "not an integer"),
        (blob(vm_id=True), "not an integer"),
        (blob(vm_id=-1), "out of range"),
        (blob(version=2), "version 2"),
        (blob(version=True), "not an integer"),
        (blob(vma_secret=12345), "not a string"),
        (blob(vma_secret="short"), "16 to 256"),
        (blob(vma_secret="a" * 30 + " b"), "16 to 256"),
        (blob(vma_secret="a" * 257), "16 to 256"),
        (blob(home_serial="../../sda"), "not a disk serial"),
        (blob(home_serial=["qvd-home"]), "not a string"),
        (blob(extra="x"), "unknown ['extra']"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "hostname"}).encode(), "missing"),
    ],
)
def test_hostile_identities_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(IdentityError, match=reason.replace("[", r"\[").replace("]", r"\]")) as err:
        parse_identity(data)
    assert SECRET not in str(err.value)


def test_a_huge_fw_cfg_file_is_read_only_up_to_the_bound(tmp_path: Path) -> None:
    raw = fw_cfg_tree(tmp_path, b'{"version": 1' + b" " * (10 * 1024 * 1024) + b"}")
    with pytest.raises(IdentityError, match="larger than"):
        read_identity(raw, load_module=lambda: None)


def test_host_names() -> None:
    assert valid_hostname("vm-10001")
    assert valid_hostname("a.b-c.d")
    for bad in ("", "a..b", "a_b", "a b", "é", "a-", "x" * 64 + "y"):
        assert not valid_hostname(bad), bad


def test_install_writes_a_private_file_and_replaces_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    run = tmp_path / "run/qvd"
    run.mkdir(parents=True)
    (run / "vma.secret").symlink_to(victim)
    install_identity(parse_identity(blob()), run / "vma.secret")
    written = run / "vma.secret"
    assert not written.is_symlink()
    assert written.read_text() == SECRET + "\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert victim.read_text() == "keep\n"
    assert [p.name for p in run.iterdir()] == ["vma.secret"]  # no temporary left


def _config(tmp_path: Path, raw: Path) -> dict[str, str]:
    image_secret = tmp_path / "etc/vma.secret"
    image_secret.parent.mkdir(parents=True, exist_ok=True)
    image_secret.write_text("image-secret-0123456789\n")
    return {
        "vma.identity.fw_cfg": str(raw),
        "vma.identity.secret.file": str(tmp_path / "run/qvd/vma.secret"),
        "vma.secret.file": str(image_secret),
        "vma.identity.fw_cfg.device": str(tmp_path / "no-fw-cfg-device"),
    }


def test_take_identity_installs_and_logs_the_source_never_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = fw_cfg_tree(tmp_path, blob())
    config = load_vma_config(tmp_path / "none.conf", _config(tmp_path, raw))
    names: list[str] = []
    with caplog.at_level(logging.INFO, logger="qvd.vma"):
        identity, secret_file = take_identity(config, set_hostname=names.append)
    assert identity is not None
    assert secret_file == tmp_path / "run/qvd/vma.secret"
    assert names == ["desk-1"]
    assert SecretStore(secret_file, environ={}).current() == SECRET.encode()
    assert "identity: fw_cfg (vm 10001, host name desk-1, home disk qvd-home)" in caplog.text
    assert SECRET not in caplog.text


def test_without_fw_cfg_the_image_secret_file_is_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = tmp_path / "qemu_fw_cfg/by_name/opt/org.qvd/identity/raw"
    raw.parent.parent.mkdir(parents=True)  # fw_cfg is there, our entry is not
    overrides = _config(tmp_path, raw)
    config = load_vma_config(tmp_path / "none.conf", overrides)
    with caplog.at_level(logging.INFO, logger="qvd.vma"):
        identity, secret_file = take_identity(config, set_hostname=lambda _: None)
    assert identity is None
    assert secret_file == Path(overrides["vma.secret.file"])
    assert "no fw_cfg entry; the secret comes from" in caplog.text


def test_a_refused_identity_refuses_every_call_even_with_an_image_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = fw_cfg_tree(tmp_path, blob(hostname="x\ny"))
    config = load_vma_config(tmp_path / "none.conf", _config(tmp_path, raw))
    names: list[str] = []
    with caplog.at_level(logging.INFO, logger="qvd.vma"):
        identity, secret_file = take_identity(config, set_hostname=names.append)
    assert (identity, secret_file, names) == (None, None, [])
    assert "identity from fw_cfg refused: hostname" in caplog.text
    assert "every call will be refused" in caplog.text
    environ = {SECRET_ENV: "from-the-environment-0123"}
    assert SecretStore(secret_file, environ=environ).current() is None
    assert SECRET_ENV not in environ  # still removed: no child inherits it
    assert not (tmp_path / "run/qvd/vma.secret").exists()


def test_a_failing_hostname_still_keeps_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = fw_cfg_tree(tmp_path, blob())
    config = load_vma_config(tmp_path / "none.conf", _config(tmp_path, raw))

    def refuse(_name: str) -> None:
        raise PermissionError(1, "Operation not permitted")

    identity, secret_file = take_identity(config, set_hostname=refuse)
    assert identity is not None
    assert secret_file is not None
    assert "cannot set the host name desk-1" in caplog.text
    assert os.path.exists(secret_file)
