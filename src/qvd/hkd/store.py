"""Every SQL statement the HKD runs, in one place.

The HKD writes runtime columns and claims commands; it never writes desired state
(``vm_cmd`` set, ``host_id`` assignment, expirations) except to clear a command it
claimed. Claims are single ``UPDATE … RETURNING`` statements (reference §2.3): the
row changes only if it is still in the state the claim expects, so two HKDs, or an
HKD and an admin, can never both act on one command.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import Connection, text

from qvd.db.session_history import close_open_rows

__all__ = [
    "DiRow",
    "EgressFacts",
    "HostRow",
    "VmView",
    "active_vm_ids",
    "claim_host_cmd",
    "claim_start",
    "claim_stop",
    "clear_runtime",
    "egress_facts",
    "find_host",
    "heartbeat",
    "load_di",
    "load_vm",
    "mark_lost_peers",
    "mark_running",
    "resolve_di",
    "save_start_details",
    "set_host_state",
    "set_vm_state",
    "vm_addresses",
    "vm_ids_on_host",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRow:
    id: int
    name: str
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DiRow:
    id: int
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VmView:
    """A VM as the reconcile loop sees it: definition plus runtime."""

    vm_id: int
    name: str
    login: str
    osf_id: int
    memory_mb: int
    user_storage_mb: int | None
    di_tag: str
    ip: str | None
    host_id: int | None
    vm_state: str
    vm_state_ts: dt.datetime
    vm_cmd: str | None
    current_di_id: int | None
    run_attempts: int
    vma_ok_ts: dt.datetime | None
    expiration_soft: dt.datetime | None
    expiration_hard: dt.datetime | None
    db_now: dt.datetime  # the database's clock when the row was read (for deadlines)
    tenant_id: int | None = None  # the user's tenant (per-tenant settings at start)

    def seconds_in_state(self) -> float:
        return (self.db_now - self.vm_state_ts).total_seconds()


def find_host(conn: Connection, name: str) -> HostRow | None:
    row = conn.execute(
        text("SELECT id, name, address FROM hosts WHERE name = :n"), {"n": name}
    ).one_or_none()
    return None if row is None else HostRow(id=row.id, name=row.name, address=row.address)


def vm_ids_on_host(conn: Connection, host_id: int) -> set[int]:
    """VMs this node must look after: assigned to it, whatever their state."""
    rows = conn.execute(text("SELECT vm_id FROM vm_runtimes WHERE host_id = :h"), {"h": host_id})
    return {r[0] for r in rows}


def vm_addresses(conn: Connection) -> list[tuple[int, str, str | None]]:
    """Every VM's id, name and address (the node's DHCP leases)."""
    rows = conn.execute(text("SELECT id, name, ip FROM vms WHERE ip IS NOT NULL ORDER BY id"))
    return [(r.id, r.name, r.ip) for r in rows]


def active_vm_ids(conn: Connection, host_id: int) -> set[int]:
    """VMs assigned to this node that are not ``stopped``."""
    rows = conn.execute(
        text("SELECT vm_id FROM vm_runtimes WHERE host_id = :h AND vm_state <> 'stopped'"),
        {"h": host_id},
    )
    return {r[0] for r in rows}


def load_vm(conn: Connection, vm_id: int) -> VmView | None:
    row = conn.execute(
        text(
            """
            SELECT v.id, v.name, u.login, v.osf_id, o.memory, o.user_storage_size, v.di_tag,
                   v.ip, r.host_id, r.vm_state, r.vm_state_ts, r.vm_cmd, r.current_di_id,
                   c.run_attempts, r.vma_ok_ts, r.vm_expiration_soft, r.vm_expiration_hard,
                   now(), u.tenant_id
              FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id
              JOIN vm_counters c ON c.vm_id = v.id
              JOIN users u ON u.id = v.user_id JOIN osfs o ON o.id = v.osf_id
             WHERE v.id = :id
            """
        ),
        {"id": vm_id},
    ).one_or_none()
    if row is None:
        return None
    return VmView(
        vm_id=row[0],
        name=row[1],
        login=row[2],
        osf_id=row[3],
        memory_mb=row[4],
        user_storage_mb=row[5],
        di_tag=row[6],
        ip=row[7],
        host_id=row[8],
        vm_state=row[9],
        vm_state_ts=row[10],
        vm_cmd=row[11],
        current_di_id=row[12],
        run_attempts=row[13],
        vma_ok_ts=row[14],
        expiration_soft=row[15],
        expiration_hard=row[16],
        db_now=row[17],
        tenant_id=row[18],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressFacts:
    """What decides whether a VM may go out (``qvd.hkd.egress``): its tenant (for the
    per-tenant token) and its OSF's values of the ``vm.network.egress`` property."""

    tenant_id: int
    osf_choices: list[str]


def egress_facts(conn: Connection, vm_id: int, key: str) -> EgressFacts | None:
    """The VM's tenant (its user's) and its OSF's values of the property ``key``."""
    row = conn.execute(
        text(
            """
            SELECT u.tenant_id, v.osf_id FROM vms v JOIN users u ON u.id = v.user_id
             WHERE v.id = :id
            """
        ),
        {"id": vm_id},
    ).one_or_none()
    if row is None:
        return None
    values = conn.execute(
        text(
            """
            SELECT x.value FROM osf_properties x
              JOIN qvd_object_properties_list a ON a.id = x.property_id AND a.qvd_object = 'osf'
              JOIN properties_list p ON p.id = a.property_id
             WHERE x.osf_id = :osf AND p.key = :key
            """
        ),
        {"osf": row.osf_id, "key": key},
    )
    return EgressFacts(tenant_id=row.tenant_id, osf_choices=[str(v[0]) for v in values])


def claim_start(conn: Connection, vm_id: int, host_id: int) -> bool:
    """Take a pending ``start``: the VM becomes ``starting`` on this host."""
    claimed = conn.execute(
        text(
            """
            UPDATE vm_runtimes SET vm_cmd = NULL, vm_state = 'starting', vm_state_ts = now(),
                   last_error = NULL
             WHERE vm_id = :id AND host_id = :h AND vm_cmd = 'start' AND vm_state = 'stopped'
            RETURNING vm_id
            """
        ),
        {"id": vm_id, "h": host_id},
    ).one_or_none()
    if claimed is not None:
        conn.execute(
            text("UPDATE vm_counters SET run_attempts = run_attempts + 1 WHERE vm_id = :id"),
            {"id": vm_id},
        )
    return claimed is not None


def claim_stop(conn: Connection, vm_id: int, host_id: int) -> bool:
    """Take a pending ``stop``: the VM becomes ``stopping``."""
    return (
        conn.execute(
            text(
                """
                UPDATE vm_runtimes SET vm_cmd = NULL, vm_state = 'stopping', vm_state_ts = now()
                 WHERE vm_id = :id AND host_id = :h AND vm_cmd = 'stop'
                   AND vm_state IN ('starting', 'running', 'debugging')
                RETURNING vm_id
                """
            ),
            {"id": vm_id, "h": host_id},
        ).one_or_none()
        is not None
    )


def resolve_di(conn: Connection, osf_id: int, tag: str) -> DiRow | None:
    """The DI a VM boots: the published, unblocked DI of its OSF that has its tag."""
    row = conn.execute(
        text(
            """
            SELECT d.id, d.path FROM di_tags t JOIN dis d ON d.id = t.di_id
              JOIN di_runtimes r ON r.di_id = d.id
             WHERE t.osf_id = :osf AND t.tag = :tag AND NOT d.blocked AND r.state = 'published'
            """
        ),
        {"osf": osf_id, "tag": tag},
    ).one_or_none()
    return None if row is None else DiRow(id=row.id, path=row.path)


def load_di(conn: Connection, di_id: int) -> DiRow | None:
    row = conn.execute(text("SELECT id, path FROM dis WHERE id = :id"), {"id": di_id}).one_or_none()
    return None if row is None else DiRow(id=row.id, path=row.path)


def save_start_details(
    conn: Connection,
    vm_id: int,
    host_id: int,
    *,
    address: str,
    vma_port: int,
    x_port: int,
    ssh_port: int,
    di_id: int,
    osf_id: int,
) -> None:
    conn.execute(
        text(
            """
            UPDATE vm_runtimes SET vm_address = :addr, vm_vma_port = :vma, vm_x_port = :x,
                   vm_ssh_port = :ssh, current_di_id = :di, current_osf_id = :osf
             WHERE vm_id = :id AND host_id = :h
            """
        ),
        {
            "addr": address,
            "vma": vma_port,
            "x": x_port,
            "ssh": ssh_port,
            "di": di_id,
            "osf": osf_id,
            "id": vm_id,
            "h": host_id,
        },
    )


def set_vm_state(
    conn: Connection,
    vm_id: int,
    host_id: int,
    state: str,
    *,
    pid: int | None = None,
    error: str | None = None,
) -> bool:
    """Move a VM of this host to ``state`` (only if it is still assigned here)."""
    return (
        conn.execute(
            text(
                """
                UPDATE vm_runtimes SET vm_state = :s, vm_state_ts = now(),
                       vm_pid = COALESCE(:pid, vm_pid), last_error = COALESCE(:err, last_error)
                 WHERE vm_id = :id AND host_id = :h
                RETURNING vm_id
                """
            ),
            {"s": state, "pid": pid, "err": error, "id": vm_id, "h": host_id},
        ).one_or_none()
        is not None
    )


def mark_running(conn: Connection, vm_id: int, host_id: int) -> bool:
    """A ``starting`` VM whose agent answered becomes ``running`` (its ``vm_pid`` was
    written when it was started)."""
    done = conn.execute(
        text(
            """
            UPDATE vm_runtimes SET vm_state = 'running', vm_state_ts = now(), vma_ok_ts = now()
             WHERE vm_id = :id AND host_id = :h AND vm_state = 'starting'
            RETURNING vm_id
            """
        ),
        {"id": vm_id, "h": host_id},
    ).one_or_none()
    if done is not None:
        conn.execute(
            text("UPDATE vm_counters SET run_ok = run_ok + 1 WHERE vm_id = :id"), {"id": vm_id}
        )
    return done is not None


def clear_runtime(conn: Connection, vm_id: int, host_id: int, *, error: str | None = None) -> bool:
    """The VM is fully stopped and cleaned: release it (reference §2.4 step 12)."""
    return (
        conn.execute(
            text(
                """
                UPDATE vm_runtimes SET vm_state = 'stopped', vm_state_ts = now(), host_id = NULL,
                       vm_cmd = NULL, vm_pid = NULL, vm_address = NULL, vm_vma_port = NULL,
                       vm_x_port = NULL, vm_ssh_port = NULL, vm_vnc_port = NULL,
                       vm_mon_port = NULL, vm_serial_port = NULL, current_di_id = NULL,
                       current_osf_id = NULL, vma_ok_ts = NULL,
                       vm_expiration_soft = NULL, vm_expiration_hard = NULL,
                       last_error = COALESCE(:err, last_error)
                 WHERE vm_id = :id AND host_id = :h
                RETURNING vm_id
                """
            ),
            {"err": error, "id": vm_id, "h": host_id},
        ).one_or_none()
        is not None
    )


# ---- the node itself -------------------------------------------------------------------------
def set_backend_facts(conn: Connection, host_id: int, facts: dict[str, str]) -> None:
    """What the node's backend chose at start (``Backend.facts()`` and its name)."""
    conn.execute(
        text("UPDATE host_runtimes SET backend_facts = :f WHERE host_id = :h"),
        {"f": json.dumps(facts, sort_keys=True), "h": host_id},
    )


def set_host_state(conn: Connection, host_id: int, state: str, pid: int | None) -> None:
    conn.execute(
        text(
            "UPDATE host_runtimes SET state = :s, state_ts = now(), pid = :pid WHERE host_id = :h"
        ),
        {"s": state, "pid": pid, "h": host_id},
    )


def heartbeat(
    conn: Connection,
    host_id: int,
    *,
    pid: int,
    usable_ram: float,
    usable_cpu: float,
    free_ram_mb: float,
    idle_cpu: float,
    running_vms: int,
) -> str:
    """Write the heartbeat and load figures; a node marked ``lost`` that is alive again
    comes back as ``running`` (the original never recovered). Returns the state."""
    row = conn.execute(
        text(
            """
            UPDATE host_runtimes SET ok_ts = now(), pid = :pid, usable_ram = :ram,
                   usable_cpu = :cpu, free_ram_mb = :free, idle_cpu = :idle,
                   running_vms = :n,
                   state = CASE WHEN state = 'lost' THEN 'running' ELSE state END,
                   state_ts = CASE WHEN state = 'lost' THEN now() ELSE state_ts END
             WHERE host_id = :h
            RETURNING state
            """
        ),
        {
            "pid": pid,
            "ram": usable_ram,
            "cpu": usable_cpu,
            "free": free_ram_mb,
            "idle": idle_cpu,
            "n": running_vms,
            "h": host_id,
        },
    ).one()
    return str(row[0])


def claim_host_cmd(conn: Connection, host_id: int) -> str | None:
    row = conn.execute(
        text(
            """
            UPDATE host_runtimes h SET cmd = NULL FROM (
                SELECT host_id, cmd FROM host_runtimes WHERE host_id = :h FOR UPDATE
            ) old WHERE h.host_id = old.host_id AND old.cmd IS NOT NULL
            RETURNING old.cmd
            """
        ),
        {"h": host_id},
    ).one_or_none()
    return None if row is None else str(row[0])


def mark_lost_peers(conn: Connection, host_id: int, timeout_s: float) -> list[int]:
    """Mark silent peers ``lost`` and release their VMs and sessions in one go.

    A peer's silence counts from the later of its last heartbeat and the database's
    own start: while the database was down nobody could beat, so an outage for
    everyone never lets a node take another's VMs (``qvd.hkd.settings``)."""
    lost = [
        r[0]
        for r in conn.execute(
            text(
                """
                UPDATE host_runtimes SET state = 'lost', state_ts = now()
                 WHERE host_id <> :h AND state IN ('starting', 'running', 'stopping')
                   AND GREATEST(ok_ts, pg_postmaster_start_time())
                       < now() - make_interval(secs => :t)
                RETURNING host_id
                """
            ),
            {"h": host_id, "t": timeout_s},
        )
    ]
    if lost:
        conn.execute(
            text(
                """
                UPDATE vm_runtimes SET vm_state = 'stopped', vm_state_ts = now(),
                       host_id = NULL, vm_cmd = NULL, vm_pid = NULL, vm_address = NULL,
                       vm_vma_port = NULL, vm_x_port = NULL, vm_ssh_port = NULL,
                       current_di_id = NULL, current_osf_id = NULL, vma_ok_ts = NULL,
                       vm_expiration_soft = NULL, vm_expiration_hard = NULL,
                       last_error = 'its node stopped answering and was marked lost'
                 WHERE host_id = ANY(:lost)
                """
            ),
            {"lost": lost},
        )
        conn.execute(
            text(
                """
                UPDATE vm_runtimes SET user_state = 'disconnected', user_state_ts = now(),
                       user_cmd = NULL, l7r_host_id = NULL, l7r_pid = NULL
                 WHERE l7r_host_id = ANY(:lost)
                """
            ),
            {"lost": lost},
        )
        # sessions that healthy nodes relay to VMs that were on a lost node must end
        conn.execute(
            text(
                """
                UPDATE vm_runtimes SET user_cmd = 'abort'
                 WHERE vm_state = 'stopped' AND user_state <> 'disconnected'
                   AND l7r_host_id IS NOT NULL AND user_cmd IS NULL
                """
            )
        )
        close_open_rows(conn, lost)  # the session history of their L7Rs: node_lost
    return lost
