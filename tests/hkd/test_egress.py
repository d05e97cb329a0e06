"""The egress decision and settings (``qvd.hkd.egress``) and the facts the HKD reads for
it from the database (``qvd.hkd.store.egress_facts``), on a throwaway PostgreSQL."""

from __future__ import annotations

import ipaddress

import pytest
from sqlalchemy import Engine, text

from qvd.config import Config
from qvd.config.tokens import is_node_local, is_per_tenant
from qvd.hkd import store
from qvd.hkd.egress import (
    EGRESS_PROPERTY,
    Egress,
    EgressError,
    EgressFilter,
    EgressRules,
    EgressSettings,
    decide,
    how_to_enable,
)
from tests.hkd.conftest import add_vm

NET = ipaddress.IPv4Network("10.231.0.0/16")


def _settings(**values: str) -> EgressSettings:
    return EgressSettings.from_config(Config().with_overrides(values, source="test"))


def _rules(settings: EgressSettings, bridge: str = "qvdnet") -> EgressRules:
    return settings.rules(bridge=bridge, network=NET, node_address="10.231.0.2")


# ---- the decision ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tenant", "osf", "out"),
    [
        (True, None, True),
        (False, None, False),
        (True, "", True),  # an empty property is no choice
        (False, "allow", True),  # the OSF wins over its tenant
        (True, "deny", False),
        (True, "DENY", False),
        (False, "1", True),
        (True, "off", False),
        (True, "maybe", False),  # unreadable: fail closed
        (True, "allow; drop table", False),
    ],
)
def test_decide_osf_over_tenant(tenant: bool, osf: str | None, out: bool) -> None:
    decision = decide(tenant_allows=tenant, osf_choice=osf)
    assert decision.out is out
    assert ("OSF" in decision.because) is bool(osf)


def _egress(global_rows: dict[str, str], tenant_rows: dict[int, dict[str, str]]) -> Egress:
    config = Config().with_db(global_rows, tenant_rows)
    rules = _rules(
        _settings(**{"vm.network.egress.enable": "1", "vm.network.egress.uplink": "eth0"})
    )
    return Egress(rules, EgressFilter("unused"), lambda: config)


def test_tenant_row_over_global_row_over_default_and_osf_over_all() -> None:
    egress = _egress({"vm.network.egress.allow": "0"}, {7: {"vm.network.egress.allow": "1"}})
    assert egress.gateway_for(7, [])[0] == "10.231.0.2"  # the tenant opted in
    assert egress.gateway_for(8, [])[0] is None  # the global row denies the others
    assert egress.gateway_for(8, ["allow"])[0] == "10.231.0.2"  # an OSF of theirs may
    assert egress.gateway_for(7, ["deny"])[0] is None
    assert egress.gateway_for(7, ["allow", "deny"])[0] is None  # disagreeing values deny
    assert egress.gateway_for(7, ["allow", " Allow"])[0] == "10.231.0.2"
    default = _egress({}, {})
    gateway, decision = default.gateway_for(7, [])
    assert gateway == "10.231.0.2"
    assert decision.because == "vm.network.egress.allow=1 for its tenant"


# ---- the node's settings -----------------------------------------------------------------
def test_off_by_default_with_a_deny_list_of_private_ranges() -> None:
    settings = _settings()
    assert settings.enabled is False
    assert ipaddress.IPv4Network("10.0.0.0/8") in settings.deny
    assert ipaddress.IPv4Network("169.254.0.0/16") in settings.deny
    assert ipaddress.IPv4Network("192.168.0.0/16") in settings.deny
    assert any("vm.network.egress.enable = 1" in line for line in how_to_enable(settings))


def test_node_switches_are_node_local_and_the_allow_per_tenant() -> None:
    for name in ("vm.network.egress.enable", "vm.network.egress.uplink", "vm.network.egress.deny"):
        assert is_node_local(name)
        assert not is_per_tenant(name)
    assert is_per_tenant("vm.network.egress.allow")
    assert not is_node_local("vm.network.egress.allow")
    # a database row (global or a tenant's) never turns the node's egress on
    config = Config().with_db(
        {"vm.network.egress.enable": "1", "vm.network.egress.uplink": "eth0"},
        {5: {"vm.network.egress.enable": "1"}},
    )
    assert EgressSettings.from_config(config).enabled is False
    assert EgressSettings.from_config(config).uplink == ""


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({}, "uplink is empty"),
        ({"vm.network.egress.uplink": 'eth0" accept'}, "not an interface name"),
        ({"vm.network.egress.uplink": "eth0\nflush ruleset"}, "not an interface name"),
        ({"vm.network.egress.uplink": "qvdnet"}, "cannot be the VM bridge"),
        ({"vm.network.egress.uplink": "eth0", "vm.network.gateway": "192.0.2.1"}, "not a host"),
        (
            {"vm.network.egress.uplink": "eth0", "vm.network.gateway": "10.231.255.255"},
            "not a host",
        ),
        ({"vm.network.egress.uplink": "eth0", "vm.network.gateway": "gw"}, "not an IPv4"),
    ],
)
def test_rules_refuse_what_cannot_be_written(values: dict[str, str], problem: str) -> None:
    settings = _settings(**{"vm.network.egress.enable": "1", **values})
    with pytest.raises(EgressError, match=problem):
        _rules(settings)


def test_deny_list_must_be_networks() -> None:
    with pytest.raises(EgressError, match="not an IPv4 network"):
        _settings(**{"vm.network.egress.deny": "10.0.0.0/8, lan"})
    assert _settings(**{"vm.network.egress.deny": ""}).deny == ()
    overlapping = _settings(**{"vm.network.egress.deny": "10.1.0.0/16, 10.0.0.0/8, 10.2.3.4"})
    assert overlapping.deny == (ipaddress.IPv4Network("10.0.0.0/8"),)


def test_rules_text() -> None:
    rules = _rules(
        _settings(**{"vm.network.egress.uplink": "eth0", "vm.network.gateway": "10.231.0.1"})
    )
    assert rules.gateway == "10.231.0.1"
    forward = rules.forward("qvdnet")
    assert 'iifname "qvdnet" oifname "eth0" ip saddr @egress accept' in forward
    assert 'iifname != "qvdnet" oifname "qvdnet" drop' in forward
    assert "10.0.0.0/8" in forward
    assert 'oifname "eth0" ip saddr @egress masquerade' in rules.nat()
    sets = rules.sets({"qvd10001": "10.231.0.101", "qvd10000": "10.231.0.100"})
    assert "elements = { 10.231.0.100, 10.231.0.101 }" in sets
    assert '"qvd10000" . 10.231.0.100, "qvd10001" . 10.231.0.101' in sets
    with pytest.raises(EgressError):
        rules.sets({'x" }; flush ruleset; #': "10.231.0.100"})
    with pytest.raises(ValueError, match=r"10\.231\.0\.100 \}"):
        rules.sets({"qvd1": "10.231.0.100 }"})
    without = _rules(
        _settings(**{"vm.network.egress.uplink": "eth0", "vm.network.egress.deny": ""})
    )
    assert "ip daddr" not in without.forward("qvdnet")


# ---- the facts in the database -----------------------------------------------------------
def _osf_property(engine: Engine, vm_id: int, value: str, *, tenant_id: int = 1) -> None:
    with engine.begin() as conn:
        osf_id = conn.execute(text("SELECT osf_id FROM vms WHERE id = :v"), {"v": vm_id}).scalar()
        prop = conn.execute(
            text(
                "INSERT INTO properties_list (key, tenant_id) VALUES (:k, :t) "
                "ON CONFLICT (key, tenant_id) DO UPDATE SET key = EXCLUDED.key RETURNING id"
            ),
            {"k": EGRESS_PROPERTY, "t": tenant_id},
        ).scalar()
        assignment = conn.execute(
            text(
                "INSERT INTO qvd_object_properties_list (property_id, qvd_object) "
                "VALUES (:p, 'osf') ON CONFLICT (property_id, qvd_object) "
                "DO UPDATE SET qvd_object = EXCLUDED.qvd_object RETURNING id"
            ),
            {"p": prop},
        ).scalar()
        conn.execute(
            text("INSERT INTO osf_properties (osf_id, property_id, value) VALUES (:o, :p, :v)"),
            {"o": osf_id, "p": assignment, "v": value},
        )


def test_egress_facts_read_the_tenant_and_the_osf_property(engine: Engine) -> None:
    plain, _ = add_vm(engine)
    chosen, _ = add_vm(engine)
    _osf_property(engine, chosen, "deny")
    with engine.begin() as conn:
        tenant = conn.execute(
            text("INSERT INTO tenants (name) VALUES ('egress-t') RETURNING id")
        ).scalar_one()
        conn.execute(
            text(
                "UPDATE users SET tenant_id = :t WHERE id = (SELECT user_id FROM vms WHERE id = :v)"
            ),
            {"t": tenant, "v": plain},
        )
        assert store.egress_facts(conn, plain, EGRESS_PROPERTY) == store.EgressFacts(
            tenant_id=tenant, osf_choices=[]
        )
        assert store.egress_facts(conn, chosen, EGRESS_PROPERTY) == store.EgressFacts(
            tenant_id=1, osf_choices=["deny"]
        )
        assert store.egress_facts(conn, 999_999, EGRESS_PROPERTY) is None
        # another property of the OSF is not this one
        assert store.egress_facts(conn, chosen, "vm.network.egress.x") == store.EgressFacts(
            tenant_id=1, osf_choices=[]
        )
