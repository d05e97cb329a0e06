"""The ``ldap`` plugin through the real L7R against a real slapd: direct bind,
anonymous search-then-bind and search with a service account, per-tenant settings."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from qvd.config import GLOBAL_TENANT
from tests.conftest import free_port
from tests.l7r.conftest import PASSWORD, Lab
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


@dataclass
class Acme:
    """Tenant ``acme``: its users have no local password, only LDAP can let them in."""

    lab: Lab
    directory: Directory
    tenant_id: int
    alice_vm: int

    def configure(self, mode: str, **extra: str) -> None:
        values = {"l7r.auth.plugins": "ldap", **ldap_settings(self.directory, mode), **extra}
        set_config(self.lab.engine, self.tenant_id, values)


@pytest.fixture
def acme(lab: Lab, slapd: Directory) -> Acme:
    engine = lab.engine
    tenant_id = add_tenant(engine, "acme")
    osf = add_osf(engine, tenant_id, "acme-desk")
    alice = add_user(engine, tenant_id, "alice")
    for login in ("bob", "sam", "dan,jr", "al*"):
        add_user(engine, tenant_id, login)
    vm = add_vm(engine, alice, osf, "alice-acme")
    return Acme(lab=lab, directory=slapd, tenant_id=tenant_id, alice_vm=vm)


def assert_refused(lab: Lab, login: str, password: str, reason: bytes) -> None:
    refused(get(lab, "/qvd/list_of_vm", basic(login, password)), reason)


@pytest.mark.parametrize("mode", ["direct", "search", "search-bind"])
def test_ldap_password_decides(acme: Acme, mode: str) -> None:
    acme.configure(mode, **{"auth.ldap.home.set": "1"})
    lab = acme.lab
    reply = get(lab, "/qvd/list_of_vm", basic("alice@acme", "alicepw"))
    assert reply.status == 200, reply
    assert [vm["name"] for vm in json.loads(reply.body)] == ["alice-acme"]
    assert get(lab, "/qvd/list_of_vm", basic(" ALICE@Acme ", "alicepw")).status == 200
    assert_refused(lab, "alice@acme", "alicepw-not", b"wrong login or password")
    # bob is registered in the tenant but unknown to the directory
    bob_reason = b"found 0 entries" if mode != "direct" else b"wrong login or password"
    assert_refused(lab, "bob@acme", "alicepw", bob_reason)
    # carol is in the directory (right password) but not a user of the tenant
    assert_refused(lab, "carol@acme", "carolpw", b"not registered in tenant 'acme'")
    # uid=dan\,jr,ou=people,...: DN syntax in a login never reaches the directory (the
    # login rule refuses it first; the plugin escapes what it sends all the same)
    assert_refused(lab, "dan,jr@acme", "danpw", b"'dan,jr' is not a valid login: it contains ','")
    # what the directory says about alice reaches the auth params (for the VMA)
    reply = get(lab, "/qvd/authenticate_user?store_auth=1", basic("alice@acme", "alicepw"))
    assert reply.status == 200, reply
    params_id = json.loads(reply.body)["auth_params_id"]
    with lab.engine.begin() as conn:
        params = conn.execute(
            text("SELECT parameters FROM user_auth_parameters WHERE id = :i"), {"i": params_id}
        ).scalar_one()
    assert params == {
        "qvd.vm.user.name": "alice",
        "qvd.vm.user.uid": "10001",
        "qvd.vm.user.gid": "11001",
        "qvd.vm.user.ldap.name": "alice",
        "qvd.vm.user.ldap.home": "/home/alice",
        "qvd.vm.user.home": "/home/alice",
    }


def test_search_settings_per_tenant(acme: Acme) -> None:
    """One directory, four tenants: ou=staff is readable only by a bound user, so the
    reader finds sam and anonymous does not; a wrong reader password and a dead server
    refuse with their reason, quickly."""
    acme.configure("search-bind")
    lab, engine, directory = acme.lab, acme.lab.engine, acme.directory
    anon_tree = {"auth.ldap.base": "dc=example,dc=test", "auth.ldap.scope": "sub"}
    tenants = {
        "anon": {**ldap_settings(directory, "search"), **anon_tree},
        "badreader": {**ldap_settings(directory, "search-bind"), "auth.ldap.bindpass": "nope"},
        "down": {
            **ldap_settings(directory, "search"),
            "auth.ldap.host": f"ldap://127.0.0.1:{free_port()}",
        },
    }
    for name, settings in tenants.items():
        tenant_id = add_tenant(engine, name)
        for login in ("alice", "sam"):
            add_user(engine, tenant_id, login)
        set_config(engine, tenant_id, {"l7r.auth.plugins": "ldap", **settings})
    assert get(lab, "/qvd/list_of_vm", basic("sam@acme", "sampw")).status == 200
    assert_refused(lab, "sam@acme", "wrong", b"wrong login or password")
    assert get(lab, "/qvd/list_of_vm", basic("alice@anon", "alicepw")).status == 200
    assert_refused(lab, "sam@anon", "sampw", b"found 0 entries")
    assert_refused(lab, "alice@badreader", "alicepw", b"LDAP search bind failed")
    started = time.monotonic()
    assert_refused(lab, "alice@down", "alicepw", b"failed")
    assert time.monotonic() - started < 5
    # filter syntax in a login never reaches the directory: al* must not find alice
    assert_refused(lab, "al*@acme", "alicepw", b"'al*' is not a valid login: it contains '*'")


def test_a_directory_uid_that_breaks_the_login_rule_is_refused(acme: Acme) -> None:
    """The tenant's directory decides the login with ``name.normalize``: its uid must
    follow the login rule like a typed one (``dan,jr`` found by uidNumber)."""
    acme.configure("search", **{"auth.ldap.filter": "(uidNumber=%u)", "auth.ldap.scope": "sub",
                                "auth.ldap.base": "dc=example,dc=test",
                                "auth.ldap.name.normalize": "1"})  # fmt: skip
    add_user(acme.lab.engine, acme.tenant_id, "10004")
    assert_refused(
        acme.lab,
        "10004@acme",
        "danpw",
        b"the directory's uid 'dan,jr' is not a valid login: it contains ','",
    )


def test_ldap_for_one_tenant_only(acme: Acme) -> None:
    acme.configure("search")
    lab = acme.lab
    # tenant default: no LDAP, the local password (PASSWORD) only
    assert get(lab, "/qvd/list_of_vm", basic("alice", PASSWORD)).status == 200
    assert_refused(lab, "alice", "alicepw", b"wrong login or password")
    # tenant acme: LDAP; its users have no local password
    assert get(lab, "/qvd/list_of_vm", basic("alice@acme", "alicepw")).status == 200
    assert_refused(lab, "alice@acme", PASSWORD, b"wrong login or password")


def test_ldap_globally_and_a_tenant_that_opts_out(acme: Acme) -> None:
    lab = acme.lab
    set_config(
        lab.engine,
        GLOBAL_TENANT,
        {"l7r.auth.plugins": "ldap", **ldap_settings(acme.directory, "direct")},
    )
    solo = add_tenant(lab.engine, "solo")
    add_user(lab.engine, solo, "alice")
    set_config(lab.engine, solo, {"l7r.auth.plugins": "default"})
    assert get(lab, "/qvd/list_of_vm", basic("alice@acme", "alicepw")).status == 200
    assert get(lab, "/qvd/list_of_vm", basic("alice", "alicepw")).status == 200
    assert get(lab, "/qvd/list_of_vm", basic("alice", PASSWORD)).status == 200  # ldap,default
    assert_refused(lab, "alice@solo", "alicepw", b"wrong login or password")
