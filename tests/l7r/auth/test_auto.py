"""The ``auto`` plugin (users and VMs made on first LDAP login) through the real L7R."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text

from tests.l7r.conftest import Lab
from tests.l7r.ldap_fixture import (
    Directory,
    add_osf,
    add_tenant,
    add_user,
    add_vm,
    basic,
    get,
    ldap_settings,
    refused,
    set_config,
)


def row_version(engine: Engine, user_id: int) -> str:
    """The transaction that last wrote the users row (changes with every UPDATE)."""
    with engine.begin() as conn:
        return str(
            conn.execute(text("SELECT xmin FROM users WHERE id = :u"), {"u": user_id}).scalar()
        )


# ---- auto ------------------------------------------------------------------------------------
@dataclass
class AutoTenant:
    lab: Lab
    tenant_id: int
    osf_id: int

    def counts(self) -> tuple[int, int]:
        """(users, VMs) of the tenant."""
        with self.lab.engine.begin() as conn:
            row = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM users WHERE tenant_id = :t), "
                    "(SELECT count(*) FROM vms v JOIN users u ON u.id = v.user_id "
                    "  WHERE u.tenant_id = :t)"
                ),
                {"t": self.tenant_id},
            ).one()
        return int(row[0]), int(row[1])


@pytest.fixture
def auto(lab: Lab, slapd: Directory) -> AutoTenant:
    tenant_id = add_tenant(lab.engine, "acme")
    osf_id = add_osf(lab.engine, tenant_id, "auto-desk")
    set_config(
        lab.engine,
        tenant_id,
        {
            "l7r.auth.plugins": "auto,ldap",
            "auth.auto.enable": "1",
            **ldap_settings(slapd, "search"),
            "auth.auto.osf_id": str(osf_id),
            "auth.auto.di_tag": "beta",
        },
    )
    return AutoTenant(lab=lab, tenant_id=tenant_id, osf_id=osf_id)


def test_auto_first_login_makes_user_and_vm_once(auto: AutoTenant) -> None:
    lab = auto.lab
    assert auto.counts() == (0, 0)
    refused(get(lab, "/qvd/list_of_vm", basic("carol@acme", "wrong")), b"wrong login")
    refused(get(lab, "/qvd/list_of_vm", basic("bob@acme", "carolpw")), b"found 0 entries")
    assert auto.counts() == (0, 0), "a refused login creates nothing"

    first = get(lab, "/qvd/list_of_vm", basic("carol@acme", "carolpw"))
    assert first.status == 200, first
    listed = json.loads(first.body)
    assert [(vm["name"], vm["state"]) for vm in listed] == [("carol-1", "stopped")]
    with lab.engine.begin() as conn:
        user = conn.execute(
            text("SELECT id, password FROM users WHERE tenant_id = :t AND login = 'carol'"),
            {"t": auto.tenant_id},
        ).one()
        vm = conn.execute(
            text("SELECT id, name, osf_id, di_tag, ip FROM vms WHERE user_id = :u"),
            {"u": user[0]},
        ).one()
    assert user[1] is None, "an auto-created user has no local password"
    version = row_version(lab.engine, user[0])
    assert tuple(vm) == (listed[0]["id"], "carol-1", auto.osf_id, "beta", "10.0.0.100")
    assert auto.counts() == (1, 1)

    again = get(lab, "/qvd/list_of_vm", basic("carol@acme", "carolpw"))
    assert again.status == 200
    assert json.loads(again.body) == listed
    assert auto.counts() == (1, 1), "the second login creates nothing"
    assert row_version(lab.engine, user[0]) == version, "nor rewrites the user (user_changed)"


def test_auto_takes_the_first_free_name_and_address(auto: AutoTenant) -> None:
    """alice already has ``alice-1`` in another OSF; an address is taken by another VM."""
    lab = auto.lab
    alice = add_user(lab.engine, auto.tenant_id, "alice")
    other_osf = add_osf(lab.engine, auto.tenant_id, "other")
    add_vm(lab.engine, alice, other_osf, "alice-1")
    with lab.engine.begin() as conn:
        conn.execute(text("UPDATE vms SET ip = '10.0.0.100' WHERE name = 'alice-1'"))
    reply = get(lab, "/qvd/list_of_vm", basic("alice@acme", "alicepw"))
    assert reply.status == 200, reply
    with lab.engine.begin() as conn:
        rows = conn.execute(
            text("SELECT name, osf_id, ip FROM vms WHERE user_id = :u ORDER BY name"),
            {"u": alice},
        ).all()
    assert [tuple(r) for r in rows] == [
        ("alice-1", other_osf, "10.0.0.100"),
        ("alice-2", auto.osf_id, "10.0.0.101"),
    ]


def test_concurrent_first_logins_make_one_vm(auto: AutoTenant) -> None:
    lab = auto.lab
    gate = threading.Barrier(6)
    statuses: list[int] = []

    def login() -> None:
        gate.wait(5)
        statuses.append(get(lab, "/qvd/list_of_vm", basic("carol@acme", "carolpw")).status)

    threads = [threading.Thread(target=login) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 6
    assert auto.counts() == (1, 1)


def test_auto_needs_an_osf_of_the_tenant(auto: AutoTenant, slapd: Directory) -> None:
    lab = auto.lab
    cases = {"noosf": None, "foreign": str(auto.osf_id)}
    for name, osf in cases.items():
        tenant_id = add_tenant(lab.engine, name)
        values = {
            "l7r.auth.plugins": "auto,ldap",
            "auth.auto.enable": "1",
            **ldap_settings(slapd, "search"),
        }
        if osf is not None:
            values["auth.auto.osf_id"] = osf
        set_config(lab.engine, tenant_id, values)
    refused(get(lab, "/qvd/list_of_vm", basic("carol@noosf", "carolpw")), b"auth.auto.osf_id")
    refused(
        get(lab, "/qvd/list_of_vm", basic("carol@foreign", "carolpw")),
        f"auth.auto.osf_id {auto.osf_id} is not an OSF of tenant 'foreign'".encode(),
    )
    with lab.engine.begin() as conn:
        made = conn.execute(text("SELECT count(*) FROM users WHERE login = 'carol'")).scalar()
    assert made == 0
