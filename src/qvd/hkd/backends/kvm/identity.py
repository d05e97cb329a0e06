"""The identity a KVM guest reads through fw_cfg (``opt/org.qvd/identity``).

JSON ``{"version": 1, "vm_id", "hostname", "vma_secret", "home_serial"}``, written to a
0600 root file in the VM's runtime directory that QEMU opens before it drops its
privileges; the secret is never on a command line.
"""

from __future__ import annotations

import json
import re

__all__ = ["hostname_for", "identity_json"]

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def hostname_for(vm_id: int, name: str) -> str:
    """The VM's name when it is a valid host name (one RFC 1123 label), else
    ``qvd-<vm_id>``."""
    return name if _LABEL.fullmatch(name) else f"qvd-{vm_id}"


def identity_json(vm_id: int, name: str, secret: str, home_serial: str | None) -> bytes:
    body = {
        "version": 1,
        "vm_id": vm_id,
        "hostname": hostname_for(vm_id, name),
        "vma_secret": secret,
        "home_serial": home_serial,
    }
    return json.dumps(body, sort_keys=True).encode() + b"\n"
