"""The L7R's reads and writes of VMs, hosts, sessions and properties for the endpoints
and the connect flow (blocking; run off the event loop). Authentication keeps its own
queries with its plugins and tokens (``auth/``), and ``tls`` reads the SSL rows.

Every change of session ownership is one conditional ``UPDATE … RETURNING``, so two
L7Rs racing for a VM cannot both win; the triggers send the notifications. Starts and
stops of VMs follow the rules shared with the API, in ``qvd.db.vmrules``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

__all__ = [
    "Runtime",
    "VmRow",
    "acquire_session",
    "ask_to_abort",
    "bump_counter",
    "host_status",
    "list_vms",
    "mark_connected",
    "merged_properties",
    "release_session",
    "runtime",
    "vm_row",
]


def host_status(conn: Connection, host_id: int) -> tuple[str, bool] | None:
    """(HKD state, blocked) of this node, or None when it is not registered."""
    row = conn.execute(
        text("SELECT state, blocked FROM host_runtimes WHERE host_id = :h"), {"h": host_id}
    ).first()
    return None if row is None else (str(row[0]), bool(row[1]))


_COUNTERS = frozenset(
    {"http_requests", "auth_attempts", "auth_ok", "nx_attempts", "nx_ok", "short_sessions"}
)


def bump_counter(conn: Connection, host_id: int, counter: str) -> None:
    if counter not in _COUNTERS:
        raise ValueError(counter)
    conn.execute(
        text(f"UPDATE host_counters SET {counter} = {counter} + 1 WHERE host_id = :h"),
        {"h": host_id},
    )


def list_vms(conn: Connection, user_id: int, *, applications: bool = False) -> list[dict[str, Any]]:
    """The user's VMs as clients want them: integer ``id`` and ``blocked``."""
    rows = conn.execute(
        text(
            "SELECT v.id, r.vm_state, v.name, r.blocked, o.is_application "
            "  FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id JOIN osfs o ON o.id = v.osf_id "
            " WHERE v.user_id = :u AND o.is_application = :a ORDER BY v.id"
        ),
        {"u": user_id, "a": applications},
    )
    return [
        {
            "id": int(r[0]),
            "state": str(r[1]),
            "name": str(r[2]),
            "blocked": 1 if r[3] else 0,
            "is_application": bool(r[4]),
        }
        for r in rows
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class VmRow:
    id: int
    name: str
    user_id: int
    osf_id: int
    blocked: bool


def vm_row(conn: Connection, vm_id: int) -> VmRow | None:
    row = conn.execute(
        text(
            "SELECT v.id, v.name, v.user_id, v.osf_id, r.blocked FROM vms v "
            "JOIN vm_runtimes r ON r.vm_id = v.id WHERE v.id = :v"
        ),
        {"v": vm_id},
    ).first()
    if row is None:
        return None
    return VmRow(id=row[0], name=row[1], user_id=row[2], osf_id=row[3], blocked=bool(row[4]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    vm_state: str
    vm_cmd: str | None
    host_id: int | None
    vm_address: str | None
    vma_port: int | None
    x_port: int | None
    user_state: str
    user_cmd: str | None
    l7r_host_id: int | None
    last_error: str | None
    run_attempts: int


def runtime(conn: Connection, vm_id: int) -> Runtime:
    row = conn.execute(
        text(
            "SELECT r.vm_state, r.vm_cmd, r.host_id, r.vm_address, r.vm_vma_port, r.vm_x_port, "
            "       r.user_state, r.user_cmd, r.l7r_host_id, r.last_error, c.run_attempts "
            "  FROM vm_runtimes r JOIN vm_counters c ON c.vm_id = r.vm_id WHERE r.vm_id = :v"
        ),
        {"v": vm_id},
    ).one()
    return Runtime(
        vm_state=row[0], vm_cmd=row[1], host_id=row[2], vm_address=row[3], vma_port=row[4],
        x_port=row[5], user_state=row[6], user_cmd=row[7], l7r_host_id=row[8],
        last_error=row[9], run_attempts=int(row[10]),
    )  # fmt: skip


def acquire_session(
    conn: Connection, vm_id: int, host_id: int, pid: int, user_id: int, user_ip: str
) -> bool:
    """Take a disconnected session for this L7R (``connecting``)."""
    row = conn.execute(
        text(
            "UPDATE vm_runtimes SET user_state = 'connecting', user_state_ts = now(), "
            "       l7r_host_id = :h, l7r_pid = :p, user_cmd = NULL, real_user_id = :u, "
            "       user_ip = :ip "
            " WHERE vm_id = :v AND user_state = 'disconnected' RETURNING vm_id"
        ),
        {"v": vm_id, "h": host_id, "p": pid, "u": user_id, "ip": user_ip},
    ).first()
    return row is not None


def ask_to_abort(conn: Connection, vm_id: int) -> int | None:
    """Ask the L7R holding the session to let go; returns its host (None: no holder
    is recorded, and the stale session was cleared here)."""
    row = conn.execute(
        text(
            "UPDATE vm_runtimes SET user_cmd = 'abort' WHERE vm_id = :v "
            "   AND user_state IN ('connecting', 'connected') AND l7r_host_id IS NOT NULL "
            "RETURNING l7r_host_id"
        ),
        {"v": vm_id},
    ).first()
    if row is not None:
        return int(row[0])
    conn.execute(
        text(
            "UPDATE vm_runtimes SET user_state = 'disconnected', user_state_ts = now(), "
            "       user_cmd = NULL, l7r_pid = NULL "
            " WHERE vm_id = :v AND user_state <> 'disconnected' AND l7r_host_id IS NULL"
        ),
        {"v": vm_id},
    )
    return None


def release_session(conn: Connection, vm_id: int, host_id: int) -> bool:
    """Back to ``disconnected`` if this L7R holds the session."""
    row = conn.execute(
        text(
            "UPDATE vm_runtimes SET user_state = 'disconnected', user_state_ts = now(), "
            "       user_cmd = NULL, l7r_host_id = NULL, l7r_pid = NULL "
            " WHERE vm_id = :v AND l7r_host_id = :h RETURNING vm_id"
        ),
        {"v": vm_id, "h": host_id},
    ).first()
    return row is not None


def mark_connected(conn: Connection, vm_id: int, host_id: int) -> bool:
    row = conn.execute(
        text(
            "UPDATE vm_runtimes SET user_state = 'connected', user_state_ts = now() "
            " WHERE vm_id = :v AND user_state = 'connecting' AND l7r_host_id = :h "
            "   AND user_cmd IS NULL RETURNING vm_id"
        ),
        {"v": vm_id, "h": host_id},
    ).first()
    return row is not None


_PROPERTY_SOURCES = (
    ("osf_properties", "osf_id", "SELECT osf_id FROM vms WHERE id = :v"),
    ("di_properties", "di_id", "SELECT current_di_id FROM vm_runtimes WHERE vm_id = :v"),
    ("user_properties", "user_id", "SELECT user_id FROM vms WHERE id = :v"),
    ("vm_properties", "vm_id", "SELECT :v"),
)


def merged_properties(conn: Connection, vm_id: int) -> dict[str, str]:
    """Custom properties flattened OSF → current DI → user → VM (later ones win)."""
    merged: dict[str, str] = {}
    for table, column, owner in _PROPERTY_SOURCES:
        rows = conn.execute(
            text(
                f"SELECT p.key, x.value FROM {table} x "
                "JOIN qvd_object_properties_list a ON a.id = x.property_id "
                "JOIN properties_list p ON p.id = a.property_id "
                f"WHERE x.{column} = ({owner}) ORDER BY p.key"
            ),
            {"v": vm_id},
        )
        merged.update({str(k): str(v) for k, v in rows})
    return merged
