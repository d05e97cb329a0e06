"""Migrations carry a working database's rows: a database filled the way a deployment
fills it (tenants, administrators, users, VMs, DIs with tags, configs, properties,
sessions, tokens, the audit log) goes up to head, down to the seed revision and up
again, and every row comes back as it was; the seed rows stay untouched.

The expectations are the rows themselves, read back before the first migration: no
count or name here comes from the code under test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget, make_engine, schema_status
from qvd.db import downgrade as db_downgrade
from qvd.db import upgrade as db_upgrade
from qvd.db.seed_acls import LATER_ACLS

# The first revision with the seed rows (tenants, states, ACLs, roles): before it no
# row of a deployment can exist, as every object belongs to a tenant.
SEEDED = "0003"
# What the revisions after SEEDED create, and the rows that go with them.
VIEW_TABLES = ("tenant_views", "administrator_views")
# 0006 (login hardening): a new table, and a column on user_tokens ('' for the tokens
# that exist at upgrade time: they were issued without a password binding and end)
LOGIN_TABLES = ("user_totp_uses",)
# 0007 (host backend): a column on host_runtimes, NULL until the node's HKD starts again
WIDENED = ("user_tokens", "host_runtimes")
# 0008 (spy tickets): a new table, empty at upgrade (tickets live 60 seconds)
SPY_TABLES = ("vm_spy_tickets",)
FLEET_TABLES = ("session_history", "policies", "node_join_tokens")  # 0009
# 0009 also seeds the policies' ACLs and built-in roles and the session history's ACL
LATER_SEEDED = ("acls", "roles", "acl_role_relations", "role_role_relations")

Snapshot = dict[str, list[str]]


@pytest.fixture
def engine_at_seed(empty_db: DatabaseTarget) -> Iterator[Engine]:
    eng = make_engine(empty_db)
    db_upgrade(eng, SEEDED)
    try:
        yield eng
    finally:
        eng.dispose()


def _tables(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.scalars(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            )
        )


def snapshot(engine: Engine) -> Snapshot:
    """Every row of every table, as text, in a stable order."""
    found: Snapshot = {}
    with engine.connect() as conn:
        for table in _tables(engine):
            rows = conn.scalars(
                text(f'SELECT t::text FROM "{table}" t ORDER BY t::text COLLATE "C"')
            )
            found[table] = [str(r) for r in rows]
    return found


def fill_at_seed(engine: Engine) -> None:
    """What a running deployment has, entered as its API and daemons enter it."""
    with engine.begin() as conn:

        def one(sql: str, **params: object) -> int:
            return int(conn.execute(text(sql), params).scalar_one())

        def change(sql: str, params: dict[str, object]) -> None:
            assert conn.execute(text(sql), params).rowcount == 1, sql

        acme = one(
            "INSERT INTO tenants (name, description, language, block) "
            "VALUES ('acme', 'Acme Corp', 'es', 25) RETURNING id"
        )
        admin = one(
            "INSERT INTO administrators (tenant_id, name, password, description) "
            "VALUES (:t, 'ops', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'on call') "
            "RETURNING id",
            t=acme,
        )
        role = one(
            "INSERT INTO roles (tenant_id, name, description) "
            "VALUES (:t, 'helpdesk', 'first line') RETURNING id",
            t=acme,
        )
        conn.execute(
            text(
                "INSERT INTO acl_role_relations (acl_id, role_id, positive) "
                "SELECT id, :r, name <> 'vm.delete.' FROM acls "
                "WHERE name IN ('vm.see.', 'vm.update.state', 'vm.delete.')"
            ),
            {"r": role},
        )
        conn.execute(
            text(
                "INSERT INTO role_role_relations (inheritor_id, inherited_id) "
                "SELECT :r, id FROM roles WHERE name = 'Operator L1' AND tenant_id = -1"
            ),
            {"r": role},
        )
        conn.execute(
            text(
                "INSERT INTO role_administrator_relations (role_id, administrator_id) "
                "VALUES (:r, :a)"
            ),
            {"r": role, "a": admin},
        )
        users = [
            one(
                "INSERT INTO users (tenant_id, login, password, description, blocked) "
                "VALUES (:t, :l, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', :d, :b) "
                "RETURNING id",
                t=tenant,
                l=login,
                d=f"{login} of tenant {tenant}",
                b=blocked,
            )
            for tenant, login, blocked in (
                (acme, "ana", False),
                (acme, "bea", True),
                (1, "ana", False),
            )
        ]
        osf = one(
            "INSERT INTO osfs (tenant_id, name, memory, user_storage_size, description) "
            "VALUES (:t, 'office', 512, 100, 'office desktops') RETURNING id",
            t=acme,
        )
        dis = [
            one(
                "INSERT INTO dis (osf_id, path, version, description, pending_tags) "
                "VALUES (:o, :p, :v, 'Xfce', :pending) RETURNING id",
                o=osf,
                p=f"{n}-office.tar.zst",
                v=f"2026-12-0{n}",
                pending=["beta"] if n == 2 else [],
            )
            for n in (1, 2)
        ]
        for di, tag, fixed in (
            (dis[0], "default", False),
            (dis[0], "stable", True),
            (dis[1], "head", False),
            (dis[1], "2026-12-02", False),
        ):
            conn.execute(
                text("INSERT INTO di_tags (di_id, tag, fixed) VALUES (:d, :t, :f)"),
                {"d": di, "t": tag, "f": fixed},
            )
        change(
            (
                "UPDATE di_runtimes SET state = 'published', elapsed_time = 42, "
                "percentage = 100 WHERE di_id = :d"
            ),
            {"d": dis[0]},
        )
        host = one(
            "INSERT INTO hosts (name, address, description) "
            "VALUES ('node1', '10.0.0.2', 'rack 3') RETURNING id"
        )
        change(
            (
                "UPDATE host_runtimes SET state = 'running', pid = 4242, ok_ts = now(), "
                "free_ram_mb = 3000, idle_cpu = 0.5, running_vms = 1 WHERE host_id = :h"
            ),
            {"h": host},
        )
        change(
            ("UPDATE host_counters SET http_requests = 7, auth_ok = 5 WHERE host_id = :h"),
            {"h": host},
        )
        vms = [
            one(
                "INSERT INTO vms (name, user_id, osf_id, di_tag, ip, storage) "
                "VALUES (:n, :u, :o, :tag, :ip, :s) RETURNING id",
                n=f"desk-{i}",
                u=users[i],
                o=osf,
                tag=tag,
                ip=f"10.0.0.{100 + i}",
                s=None,
            )
            for i, tag in ((0, "default"), (1, "head"))
        ]
        change(
            (
                "UPDATE vm_runtimes SET host_id = :h, current_osf_id = :o, current_di_id = :d, "
                "vm_state = 'running', user_state = 'connected', user_ip = '192.0.2.7', "
                "vm_address = '10.0.0.100', vm_vma_port = 3030, vm_x_port = 4100, "
                "vma_ok_ts = now(), last_error = NULL WHERE vm_id = :v"
            ),
            {"h": host, "o": osf, "d": dis[0], "v": vms[0]},
        )
        change(
            (
                "UPDATE vm_runtimes SET vm_cmd = 'start', last_error = 'no free host' "
                "WHERE vm_id = :v"
            ),
            {"v": vms[1]},
        )
        change(
            ("UPDATE vm_counters SET run_attempts = 3, run_ok = 2 WHERE vm_id = :v"),
            {"v": vms[0]},
        )
        for tenant, key, value in (
            (-1, "vm.network.ip.start", "10.0.0.100"),
            (acme, "client.link", "adsl"),
            (1, "l7r.auth.mode", "basic"),
        ):
            conn.execute(
                text("INSERT INTO configs (tenant_id, key, value) VALUES (:t, :k, :v)"),
                {"t": tenant, "k": key, "v": value},
            )
        conn.execute(
            text("INSERT INTO ssl_configs (key, value) VALUES ('l7r.ssl.cert', :pem)"),
            {"pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
        )
        for obj, owner, column, table in (
            ("user", users[0], "user_id", "user_properties"),
            ("vm", vms[0], "vm_id", "vm_properties"),
            ("host", host, "host_id", "host_properties"),
            ("osf", osf, "osf_id", "osf_properties"),
            ("di", dis[0], "di_id", "di_properties"),
        ):
            prop = one(
                "INSERT INTO properties_list (key, tenant_id, description) "
                "VALUES (:k, :t, 'cost centre') RETURNING id",
                k=f"{obj}.cost_centre",
                t=acme,
            )
            assignment = one(
                "INSERT INTO qvd_object_properties_list (property_id, qvd_object) "
                "VALUES (:p, :o) RETURNING id",
                p=prop,
                o=obj,
            )
            conn.execute(
                text(f"INSERT INTO {table} ({column}, property_id, value) VALUES (:owner, :p, :v)"),
                {"owner": owner, "p": assignment, "v": f"CC-{obj}-{owner}"},
            )
        conn.execute(
            text(
                "INSERT INTO audit_log (administrator_id, administrator_name, tenant_id, "
                "tenant_name, action, type_of_action, arguments, qvd_object, object_id, "
                "object_name, status, source, ip, superadmin) VALUES "
                "(:a, 'ops', :t, 'acme', 'vm_start', 'exec', '{\"id\": 1}', 'vm', :v, 'desk-0', "
                "0, 'WAT', '192.0.2.9', false), "
                "(NULL, 'nobody', NULL, NULL, 'login', 'login', NULL, NULL, NULL, NULL, "
                "3200, 'API', '192.0.2.10', false)"
            ),
            {"a": admin, "t": acme, "v": vms[0]},
        )
        conn.execute(
            text(
                "INSERT INTO api_sessions (token_sha256, administrator_id, tenant_id, expires, "
                "ip, data) VALUES (:tok, :a, :t, now() + interval '1 hour', '192.0.2.9', "
                '\'{"lang": "es"}\')'
            ),
            {"tok": "a" * 64, "a": admin, "t": acme},
        )
        params = one(
            'INSERT INTO user_auth_parameters (parameters) VALUES (\'{"otp": "ok"}\') RETURNING id'
        )
        conn.execute(
            text(
                "INSERT INTO user_tokens (token_sha256, user_id, vm_id, expiration, "
                "auth_params_id, multi_use) VALUES (:tok, :u, :v, now() + interval '1 day', "
                ":p, true)"
            ),
            {"tok": "b" * 64, "u": users[0], "v": vms[0], "p": params},
        )


def fill_views(engine: Engine) -> None:
    """The rows only the revisions after the seed can hold (WAT column choices)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tenant_views (tenant_id, qvd_object, view_type, device_type, "
                "field, visible) SELECT id, 'vm', 'list_column', 'desktop', 'ip', false "
                "FROM tenants WHERE name = 'acme'"
            )
        )
        conn.execute(
            text(
                "INSERT INTO administrator_views (administrator_id, qvd_object, view_type, "
                "device_type, field, property) SELECT id, 'user', 'filter', 'mobile', "
                "'user.cost_centre', true FROM administrators WHERE name = 'ops'"
            )
        )


def _without(snap: Snapshot, tables: tuple[str, ...]) -> Snapshot:
    return {name: rows for name, rows in snap.items() if name not in tables}


def test_rows_survive_up_to_head_down_to_the_seed_and_up_again(engine_at_seed: Engine) -> None:
    engine = engine_at_seed
    seed_only = snapshot(engine)
    fill_at_seed(engine)
    filled = snapshot(engine)
    # the deployment's rows are there, beside the seed ones
    assert filled["users"] != seed_only["users"]
    assert len(filled["di_tags"]) == 4
    assert len(filled["audit_log"]) == 2

    db_upgrade(engine)
    head = schema_status(engine).head
    assert schema_status(engine).current == head
    at_head = snapshot(engine)
    new_tables = (*VIEW_TABLES, *LOGIN_TABLES, *SPY_TABLES, *FLEET_TABLES)
    assert set(at_head) - set(filled) == set(new_tables)
    kept = (*WIDENED, *LATER_SEEDED)
    assert _without(at_head, (*new_tables, *kept)) == _without(filled, kept)
    for table in LATER_SEEDED:
        assert set(filled[table]) < set(at_head[table]), table
    added = set(at_head["acls"]) - set(filled["acls"])
    assert sorted(a.split(",")[1] for a in added) == sorted(LATER_ACLS)
    assert all(at_head[t] == [] for t in new_tables)
    assert len(at_head["user_tokens"]) == len(filled["user_tokens"])
    with engine.connect() as conn:
        assert conn.scalars(text("SELECT DISTINCT password_fp FROM user_tokens")).all() == [""]
        facts = conn.scalars(text("SELECT DISTINCT backend_facts FROM host_runtimes")).all()
        assert facts == [None]
    assert len(at_head["host_runtimes"]) == len(filled["host_runtimes"]) == 1

    fill_views(engine)
    with_views = snapshot(engine)
    assert all(len(with_views[t]) == 1 for t in VIEW_TABLES)

    db_downgrade(engine, SEEDED)
    assert schema_status(engine).current == SEEDED
    assert snapshot(engine) == filled  # the view tables are gone, nothing else moved

    db_upgrade(engine)
    assert schema_status(engine).current == head
    assert _without(snapshot(engine), (*new_tables, *kept)) == _without(filled, kept)


def test_seed_rows_are_untouched_by_a_round_trip_of_a_filled_database(
    engine_at_seed: Engine,
) -> None:
    engine = engine_at_seed
    seed_tables = (
        "tenants",
        "acls",
        "roles",
        "acl_role_relations",
        "role_role_relations",
        "administrators",
        "vm_states",
        "vm_cmds",
        "user_states",
        "user_cmds",
        "host_states",
        "host_cmds",
    )
    before = {t: rows for t, rows in snapshot(engine).items() if t in seed_tables}
    # the seed is what the original QVD ships: three fixed tenants, a recovery admin
    assert [row.split(",")[:2] for row in before["tenants"]] == [
        ["(-1", "-"],
        ["(0", "*"],
        ["(1", "default"],
    ]
    assert len(before["acls"]) > 200
    fill_at_seed(engine)
    db_upgrade(engine)
    fill_views(engine)
    db_downgrade(engine, SEEDED)
    db_upgrade(engine)
    after = snapshot(engine)
    for table, rows in before.items():
        # every seed row is still there, unchanged; the deployment's rows come on top
        assert set(rows) <= set(after[table]), table
