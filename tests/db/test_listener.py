"""Every NOTIFY trigger, heard by a real LISTEN on a second connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from qvd.db import DatabaseTarget, Listener
from qvd.db.channels import host_cmd_channel, user_cmd_channel, vm_cmd_channel

SETUP = """
INSERT INTO tenants (id, name) VALUES (500, 'acme');
INSERT INTO users (id, tenant_id, login) VALUES (600, 500, 'ana');
INSERT INTO osfs (id, tenant_id, name) VALUES (700, 500, 'desk');
INSERT INTO dis (id, osf_id, path, version) VALUES (800, 700, '800-img.tar.zst', 'v1');
INSERT INTO hosts (id, name, address) VALUES (900, 'node1', '10.0.0.2');
INSERT INTO hosts (id, name, address) VALUES (901, 'node2', '10.0.0.3');
INSERT INTO vms (id, name, user_id, osf_id, ip) VALUES (1000, 'ana-1', 600, 700, '10.0.0.100');
INSERT INTO configs VALUES (500, 'l7r.auth.plugins', 'ldap');
"""


@dataclass(frozen=True)
class Case:
    name: str
    sql: str
    channel: str
    payload: dict[str, Any]


CASES = [
    Case("vm start command", "UPDATE vm_runtimes SET host_id = 900, vm_cmd = 'start' WHERE vm_id = 1000",
         vm_cmd_channel(900), {"vm_id": 1000, "cmd": "start"}),
    Case("vm stop command", "UPDATE vm_runtimes SET host_id = 901, vm_cmd = 'stop' WHERE vm_id = 1000",
         vm_cmd_channel(901), {"vm_id": 1000, "cmd": "stop"}),
    Case("user abort command",
         "UPDATE vm_runtimes SET l7r_host_id = 901, user_state = 'connected', user_cmd = 'abort' "
         "WHERE vm_id = 1000",
         user_cmd_channel(901), {"vm_id": 1000, "cmd": "abort"}),
    Case("host command", "UPDATE host_runtimes SET cmd = 'stop' WHERE host_id = 900",
         host_cmd_channel(900), {"host_id": 900, "cmd": "stop"}),
    Case("vm state", "UPDATE vm_runtimes SET vm_state = 'starting' WHERE vm_id = 1000",
         "vm_changed", {"vm_id": 1000, "tenant_id": 500, "vm_state": "starting",
                        "user_state": "disconnected", "host_id": None, "vm_cmd": None}),
    Case("vm expiration", "UPDATE vm_runtimes SET vm_expiration_hard = now() WHERE vm_id = 1000",
         "vm_changed", {"vm_id": 1000, "tenant_id": 500}),
    Case("vm blocked", "UPDATE vm_runtimes SET blocked = true WHERE vm_id = 1000",
         "vm_blocked_or_unblocked", {"vm_id": 1000, "tenant_id": 500, "blocked": True}),
    Case("host state", "UPDATE host_runtimes SET state = 'running' WHERE host_id = 901",
         "host_changed", {"host_id": 901, "state": "running", "blocked": False}),
    Case("global config", "INSERT INTO configs VALUES (-1, 'l7r.port', '9443')",
         "qvd_config_changed", {"tenant_id": -1, "key": "l7r.port", "op": "insert"}),
    Case("tenant config deleted",
         "DELETE FROM configs WHERE tenant_id = 500",
         "qvd_config_changed", {"tenant_id": 500, "key": "l7r.auth.plugins", "op": "delete"}),
    Case("ssl config", "INSERT INTO ssl_configs VALUES ('l7r.ssl.cert', 'PEM')",
         "qvd_ssl_config_changed", {"key": "l7r.ssl.cert", "op": "insert"}),
    Case("user created", "INSERT INTO users (id, tenant_id, login) VALUES (601, 500, 'bo')",
         "user_created", {"id": 601, "tenant_id": 500}),
    Case("user changed", "UPDATE users SET description = 'x' WHERE id = 600",
         "user_changed", {"id": 600, "tenant_id": 500}),
    Case("user blocked", "UPDATE users SET blocked = true WHERE id = 600",
         "user_blocked_or_unblocked", {"id": 600, "tenant_id": 500, "blocked": True}),
    Case("user deleted", "DELETE FROM vms; DELETE FROM users WHERE id = 600",
         "user_deleted", {"id": 600, "tenant_id": 500}),
    Case("vm created", "INSERT INTO vms (id, name, user_id, osf_id) VALUES (1001, 'b', 600, 700)",
         "vm_created", {"id": 1001, "tenant_id": 500}),
    Case("vm renamed", "UPDATE vms SET name = 'c' WHERE id = 1000",
         "vm_changed", {"id": 1000, "tenant_id": 500}),
    Case("vm deleted", "DELETE FROM vms WHERE id = 1000", "vm_deleted",
         {"id": 1000, "tenant_id": 500}),
    Case("host created", "INSERT INTO hosts (id, name, address) VALUES (902, 'n3', '10.0.0.4')",
         "host_created", {"id": 902, "tenant_id": None}),
    Case("host deleted", "DELETE FROM hosts WHERE id = 901", "host_deleted",
         {"id": 901, "tenant_id": None}),
    Case("osf changed", "UPDATE osfs SET memory = 512 WHERE id = 700", "osf_changed",
         {"id": 700, "tenant_id": 500}),
    Case("di created", "INSERT INTO dis (id, osf_id, path, version) VALUES (801, 700, 'p', 'v2')",
         "di_created", {"id": 801, "tenant_id": 500}),
    Case("di state", "UPDATE di_runtimes SET state = 'published' WHERE di_id = 800",
         "di_runtimes_changed", {"di_id": 800, "state": "published", "tenant_id": 500}),
    Case("di tag", "INSERT INTO di_tags (di_id, tag) VALUES (800, 'default')",
         "di_tags_changed", {"di_id": 800, "osf_id": 700, "tag": "default", "op": "insert"}),
    Case("tenant changed", "UPDATE tenants SET description = 'd' WHERE id = 500",
         "tenant_changed", {"id": 500, "tenant_id": 500}),
    Case("administrator created",
         "INSERT INTO administrators (id, tenant_id, name) VALUES (20, 500, 'adm')",
         "administrator_created", {"id": 20, "tenant_id": 500}),
    Case("role created", "INSERT INTO roles (id, tenant_id, name) VALUES (30, 500, 'r')",
         "role_created", {"id": 30, "tenant_id": 500}),
]  # fmt: skip


@pytest.fixture
def seeded(db: DatabaseTarget) -> DatabaseTarget:
    with db.connect() as conn:
        conn.execute(SETUP)
        conn.commit()
    return db


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_trigger_notifies(seeded: DatabaseTarget, case: Case) -> None:
    with Listener(seeded, [case.channel]) as listener:
        assert listener.wait(0.05) == []
        with seeded.connect() as writer:
            writer.execute(case.sql)
            assert listener.wait(0.2) == [], "NOTIFY must wait for COMMIT"
            writer.commit()
        heard = listener.wait(5.0, max_count=1)
    assert heard, f"nothing on {case.channel}"
    assert heard[0].channel == case.channel
    for key, value in case.payload.items():
        assert heard[0].payload[key] == value, (key, heard[0].payload)


def test_no_command_notification_without_a_host(seeded: DatabaseTarget) -> None:
    """A start command on an unassigned VM has no node to wake."""
    with Listener(seeded, [vm_cmd_channel(900), vm_cmd_channel(901)]) as listener:
        with seeded.connect() as writer:
            writer.execute("UPDATE vm_runtimes SET vm_cmd = 'start' WHERE vm_id = 1000")
            writer.commit()
        assert listener.wait(0.3) == []


def test_every_channel_in_the_catalogue_is_tested() -> None:
    from qvd.db import channels

    tested = {c.channel for c in CASES}
    for name in ("VM_CHANGED", "VM_BLOCKED", "USER_BLOCKED", "HOST_CHANGED", "CONFIG_CHANGED",
                 "SSL_CONFIG_CHANGED", "DI_RUNTIMES_CHANGED", "DI_TAGS_CHANGED"):  # fmt: skip
        assert getattr(channels, name) in tested, name
    objects_tested = {c.channel.rsplit("_", 1)[0] for c in CASES if c.channel.endswith(
        ("_created", "_changed", "_deleted"))}  # fmt: skip
    assert set(channels.OBJECT_TABLES.values()) <= objects_tested
