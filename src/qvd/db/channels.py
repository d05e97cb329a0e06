"""NOTIFY channels: their names and payloads, shared by senders and listeners.

Every payload is a JSON object. Triggers (revision 0002) send all of these when the
rows change, so no writer can forget a notification (QVD's API forgot some).

- ``qvd_cmd_for_vm_on_host<host_id>``: ``vm_runtimes.vm_cmd`` set for a VM assigned
  to that host. Payload: vm_id, cmd.
- ``qvd_cmd_for_user_on_host<host_id>``: ``vm_runtimes.user_cmd`` set for a session
  held by that host's L7R (``l7r_host_id``). Payload: vm_id, cmd.
- ``qvd_cmd_for_host<host_id>``: ``host_runtimes.cmd`` set. Payload: host_id, cmd.
- ``vm_changed``: a VM's state, user state, host, command or expirations change.
  Payload: vm_id, tenant_id, vm_state, user_state, host_id, vm_cmd.
- ``vm_blocked_or_unblocked``: ``vm_runtimes.blocked`` changes. Payload: vm_id,
  tenant_id, blocked.
- ``host_changed``: a host's state or blocked flag changes. Payload: host_id, state,
  blocked.
- ``qvd_config_changed``: any ``configs`` row. Payload: tenant_id, key, op.
- ``qvd_ssl_config_changed``: any ``ssl_configs`` row. Payload: key, op.
- ``<object>_created`` / ``_changed`` / ``_deleted`` for users, vms, hosts, osfs, dis,
  tenants, administrators, roles. Payload: id, tenant_id (null for hosts).
- ``user_blocked_or_unblocked``: ``users.blocked`` changes. Payload: id, tenant_id,
  blocked.
- ``di_runtimes_changed``: a DI's state or progress. Payload: di_id, tenant_id, state.
- ``di_tags_changed``: a tag is added, moved or removed. Payload: di_id, osf_id, tag, op.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CONFIG_CHANGED",
    "DI_RUNTIMES_CHANGED",
    "DI_TAGS_CHANGED",
    "HOST_CHANGED",
    "OBJECT_TABLES",
    "SSL_CONFIG_CHANGED",
    "USER_BLOCKED",
    "VM_BLOCKED",
    "VM_CHANGED",
    "host_cmd_channel",
    "parse_payload",
    "user_cmd_channel",
    "vm_cmd_channel",
]

VM_CHANGED = "vm_changed"
VM_BLOCKED = "vm_blocked_or_unblocked"
USER_BLOCKED = "user_blocked_or_unblocked"
HOST_CHANGED = "host_changed"
CONFIG_CHANGED = "qvd_config_changed"
SSL_CONFIG_CHANGED = "qvd_ssl_config_changed"
DI_RUNTIMES_CHANGED = "di_runtimes_changed"
DI_TAGS_CHANGED = "di_tags_changed"

# table -> object word used in ``<object>_created`` / ``_changed`` / ``_deleted``
OBJECT_TABLES: dict[str, str] = {
    "users": "user",
    "vms": "vm",
    "hosts": "host",
    "osfs": "osf",
    "dis": "di",
    "tenants": "tenant",
    "administrators": "administrator",
    "roles": "role",
}


def vm_cmd_channel(host_id: int) -> str:
    """Where a node's HKD hears that a VM command waits for it."""
    return f"qvd_cmd_for_vm_on_host{int(host_id)}"


def user_cmd_channel(host_id: int) -> str:
    """Where a node hears that one of its L7R sessions must be aborted."""
    return f"qvd_cmd_for_user_on_host{int(host_id)}"


def host_cmd_channel(host_id: int) -> str:
    """Where a node's HKD hears a command for itself (``stop``)."""
    return f"qvd_cmd_for_host{int(host_id)}"


def parse_payload(payload: str) -> dict[str, Any]:
    """The JSON object a trigger sent (an empty dict for an empty payload)."""
    if not payload:
        return {}
    value = json.loads(payload)
    if not isinstance(value, dict):
        raise ValueError(f"NOTIFY payload is not a JSON object: {payload!r}")
    return value
