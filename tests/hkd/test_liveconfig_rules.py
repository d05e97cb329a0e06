"""Pure rules of the config on every node: when a token applies (the table), a VM's
start settings per tenant (with the node's value for a bad one), pending restarts."""

from __future__ import annotations

import pytest

from qvd.config import TOKENS, Config
from qvd.config.applies import RULES, Applies, applies_of
from qvd.hkd.liveconfig import StartSettings, pending_restart

NODE = StartSettings(vcpus=2, cpu_weight=100, overlay_persistent=False)


@pytest.mark.parametrize(
    ("name", "applies"),
    [
        ("l7r.port", Applies.RESTART),
        ("l7r.address", Applies.RESTART),
        ("database.host", Applies.RESTART),
        ("path.storage.root", Applies.RESTART),
        ("internal.hkd.agent.ticker.timeout", Applies.RESTART),
        ("vm.hypervisor", Applies.RESTART),
        ("vm.lxc.pids.max", Applies.RESTART),
        ("l7r.limits.connect_workers", Applies.RESTART),
        ("l7r.auth.rate_limit.attempts", Applies.RESTART),
        ("hkd.process.limit.nofile", Applies.RESTART),
        ("vm.cpus", Applies.NEXT_START),
        ("vm.cpu.weight", Applies.NEXT_START),
        ("vm.overlay.persistent", Applies.NEXT_START),
        ("vm.network.egress.allow", Applies.LIVE),
        ("l7r.limits.connects_per_user", Applies.LIVE),
        ("l7r.auth.plugins", Applies.LIVE),
        ("auth.ldap.host", Applies.LIVE),
        ("internal.l7r.timeout.vm_start", Applies.LIVE),
        ("api.session.timeout", Applies.LIVE),
        ("vma.audio.enable", Applies.IMAGE),
        ("internal.nxagent.timeout.listening", Applies.IMAGE),
        ("client.link", Applies.CLIENT),
    ],
)
def test_each_class_of_token(name: str, applies: Applies) -> None:
    assert applies_of(name) is applies


def test_every_rule_names_a_token_or_a_prefix_of_some() -> None:
    names = [t.name for t in TOKENS]
    for rule, _applies in RULES:
        assert any(n == rule or (rule.endswith(".") and n.startswith(rule)) for n in names) or (
            rule == "hkd.process.limit."
        ), rule


def test_a_vm_takes_its_tenants_rows_then_the_global_ones() -> None:
    config = Config().with_db(
        {"vm.cpu.weight": "300", "vm.cpus": "4"},
        {7: {"vm.cpus": "1", "vm.overlay.persistent": "1"}, 8: {"vm.cpus": "6"}},
    )
    assert StartSettings.resolve(config, 7, NODE) == StartSettings(
        vcpus=1, cpu_weight=300, overlay_persistent=True
    )
    assert StartSettings.resolve(config, 8, NODE) == StartSettings(
        vcpus=6, cpu_weight=300, overlay_persistent=False
    )
    assert StartSettings.resolve(config, 9, NODE) == StartSettings(
        vcpus=4, cpu_weight=300, overlay_persistent=False
    )
    # a tenant row for a global-only token is not a tenant's to set
    only_global = Config().with_db({}, {7: {"vm.cpu.weight": "9000"}})
    assert StartSettings.resolve(only_global, 7, NODE).cpu_weight == 100


def test_an_out_of_range_value_falls_back_to_the_nodes() -> None:
    config = Config().with_db({"vm.cpu.weight": "20000", "vm.cpus": "0"})
    assert StartSettings.resolve(config, None, NODE) == NODE


def test_pending_restart_lists_changed_restart_only_tokens_by_name() -> None:
    started = Config().with_db({"l7r.port": "8443", "vm.cpu.weight": "200"})
    now = Config().with_db(
        {"l7r.port": "9443", "vm.cpu.weight": "300", "internal.hkd.workers": "2"},
        {3: {"vm.cpus": "5"}},
    )
    assert pending_restart(started, now) == ["internal.hkd.workers", "l7r.port"]
    assert pending_restart(now, now) == []
