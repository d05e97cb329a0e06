"""The VM's identity handed in by the hypervisor (KVM: QEMU's fw_cfg), read at start.

The HKD's KVM backend gives the guest ``-fw_cfg name=opt/org.qvd/identity,file=…``: a
JSON object ``{"version": 1, "vm_id": <int>, "hostname": "<host name>", "vma_secret":
"<secret>", "home_serial": "qvd-home" | null}``. Linux shows it as
``/sys/firmware/qemu_fw_cfg/by_name/opt/org.qvd/identity/raw`` once the
``qemu_fw_cfg`` module is loaded (``vma.identity.fw_cfg`` names another path, for
tests). A container has no fw_cfg: its secret stays ``/etc/qvd/vma.secret``.

Everything in the blob is data from outside the guest and is checked before use: the
size (at most :data:`MAX_IDENTITY_BYTES`), the JSON shape, every type (a bool is no
integer), the version, the host name (RFC 1123 labels, at most 64 characters, no
control character), the secret (a token of 16 to 256 visible characters) and the
serial. A refused identity is never half used: the VMA installs no secret at all and
refuses every call, rather than falling back to a secret baked into the image.

``install_identity`` writes the secret to a 0600 root file under ``/run/qvd`` (a
tmpfs: nothing of it reaches the image's disk); the caller sets the host name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FW_CFG_DEVICE",
    "FW_CFG_IDENTITY",
    "IDENTITY_VERSION",
    "MAX_IDENTITY_BYTES",
    "Identity",
    "IdentityError",
    "install_identity",
    "load_fw_cfg_module",
    "parse_identity",
    "read_identity",
    "valid_hostname",
]

FW_CFG_IDENTITY = Path("/sys/firmware/qemu_fw_cfg/by_name/opt/org.qvd/identity/raw")
FW_CFG_DEVICE = Path("/sys/bus/acpi/devices/QEMU0002:00")  # QEMU's fw_cfg, driver or not
IDENTITY_VERSION = 1
MAX_IDENTITY_BYTES = 4096
_KEYS = frozenset({"version", "vm_id", "hostname", "vma_secret", "home_serial"})
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_SECRET = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")  # an RFC 6750 token, bounded
_SERIAL = re.compile(r"[A-Za-z0-9_-]{1,20}")  # virtio-blk serials hold 20 bytes


class IdentityError(ValueError):
    """The identity blob is not what the contract says; nothing of it is used."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    vm_id: int
    hostname: str
    vma_secret: str
    home_serial: str | None

    def __repr__(self) -> str:  # never the secret, whoever prints it
        return (
            f"Identity(vm_id={self.vm_id}, hostname={self.hostname!r}, "
            f"home_serial={self.home_serial!r})"
        )


def _int(data: dict[str, object], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise IdentityError(f"{key} is a {type(value).__name__}, not an integer")
    return value


def _str(data: dict[str, object], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise IdentityError(f"{key} is a {type(value).__name__}, not a string")
    return value


def valid_hostname(name: str) -> bool:
    """RFC 1123 labels joined by dots, at most 64 characters (the kernel's limit)."""
    if not 0 < len(name) <= 64:
        return False
    return all(_LABEL.fullmatch(label) for label in name.split("."))


def parse_identity(blob: bytes) -> Identity:
    """The identity in ``blob``; raises :class:`IdentityError` saying what is wrong
    (never quoting the secret)."""
    if len(blob) > MAX_IDENTITY_BYTES:
        raise IdentityError(f"identity is larger than {MAX_IDENTITY_BYTES} bytes")
    try:
        data = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IdentityError(f"identity is not JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise IdentityError("identity is not a JSON object")
    keys = set(data)
    if keys != _KEYS:
        missing, extra = sorted(_KEYS - keys), sorted(keys - _KEYS)
        raise IdentityError(f"identity keys differ: missing {missing}, unknown {extra[:5]!r}")
    version = _int(data, "version")
    if version != IDENTITY_VERSION:
        raise IdentityError(f"identity version {version} (this VMA reads {IDENTITY_VERSION})")
    vm_id = _int(data, "vm_id")
    if not 0 < vm_id < 2**31:
        raise IdentityError(f"vm_id {vm_id} is out of range")
    hostname = _str(data, "hostname")
    if not valid_hostname(hostname):
        raise IdentityError(f"hostname {hostname[:70]!r} is not a valid host name")
    secret = _str(data, "vma_secret")
    if not _SECRET.fullmatch(secret):
        raise IdentityError(
            f"vma_secret is not a token of 16 to 256 visible characters ({len(secret)} chars)"
        )
    serial = data["home_serial"]
    if serial is not None:
        serial = _str(data, "home_serial")
        if not _SERIAL.fullmatch(serial):
            raise IdentityError(f"home_serial {serial[:30]!r} is not a disk serial")
    return Identity(vm_id=vm_id, hostname=hostname, vma_secret=secret, home_serial=serial)


def load_fw_cfg_module() -> None:
    """``modprobe qemu_fw_cfg`` (quietly: a container has neither the module nor fw_cfg)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["modprobe", "-q", "qemu_fw_cfg"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )


def _fw_cfg_root(path: Path) -> Path:
    """``/sys/firmware/qemu_fw_cfg`` for the default path (the directory the module
    makes), else the parent of ``by_name`` in a test's tree."""
    for parent in path.parents:
        if parent.name == "by_name":
            return parent.parent
    return path.parent


def read_identity(
    path: Path = FW_CFG_IDENTITY,
    *,
    load_module: Callable[[], None] = load_fw_cfg_module,
    device: Path | None = FW_CFG_DEVICE,
    wait: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Identity | None:
    """The fw_cfg identity, or None when there is no fw_cfg entry (a container).

    Loads the fw_cfg module first if its sysfs directory is missing; when the machine
    has the fw_cfg device (``device``: QEMU's ACPI node) it waits up to ``wait``
    seconds for the directory (udev may be loading the module at the same time). A
    container has no such device and waits for nothing. Raises
    :class:`IdentityError` when the entry exists but is unreadable or invalid.
    """
    root = _fw_cfg_root(path)
    if not root.is_dir():
        load_module()
        if device is not None and device.exists():
            end = time.monotonic() + wait
            while not root.is_dir() and time.monotonic() < end:
                sleep(0.1)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IdentityError(f"cannot open the identity: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "rb") as stream:
            blob = stream.read(MAX_IDENTITY_BYTES + 1)
    except OSError as exc:
        raise IdentityError(f"cannot read the identity: {exc.strerror}") from None
    return parse_identity(blob)


def _write_secret(path: Path, secret: str) -> None:
    """Replace ``path`` by a 0600 file holding ``secret`` (never through a link)."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(secret + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def install_identity(identity: Identity, secret_file: Path) -> None:
    """Write the secret to ``secret_file`` (0600, root's, replaced atomically)."""
    _write_secret(secret_file, identity.vma_secret)
