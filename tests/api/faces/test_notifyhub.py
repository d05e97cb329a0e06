"""The notify hub: which changes a subscription hears, and the channels the database
triggers send."""

from __future__ import annotations

from qvd.api.faces import notifyhub


def test_a_subscription_hears_its_tenant_and_global_changes_only() -> None:
    sub = notifyhub.Subscription(channels=frozenset({"vm_changed", "host_changed"}), tenant_id=7)
    assert sub.concerns("vm_changed", '{"vm_id": 1, "tenant_id": 7}')
    assert not sub.concerns("vm_changed", '{"vm_id": 2, "tenant_id": 8}')
    assert sub.concerns("vm_changed", '{"vm_id": 3, "tenant_id": -1}')
    assert sub.concerns("host_changed", '{"host_id": 4, "state": "running"}')  # hosts: global
    assert not sub.concerns("user_changed", '{"id": 5, "tenant_id": 7}')
    assert sub.concerns("vm_changed", "not json")  # when in doubt, run again
    superadmin = notifyhub.Subscription(channels=frozenset({"vm_changed"}), tenant_id=None)
    assert superadmin.concerns("vm_changed", '{"vm_id": 2, "tenant_id": 8}')


def test_channels_are_those_the_triggers_send() -> None:
    from qvd.api.actions.dispatch import CATALOGUE
    from qvd.db import channels

    verbs = ("created", "changed", "deleted")
    sent = {f"{noun}_{verb}" for noun in channels.OBJECT_TABLES.values() for verb in verbs} | {
        channels.VM_CHANGED, channels.VM_BLOCKED, channels.USER_BLOCKED, channels.HOST_CHANGED,
        channels.CONFIG_CHANGED, channels.DI_RUNTIMES_CHANGED, channels.DI_TAGS_CHANGED,
    }  # fmt: skip
    assert not notifyhub.ALL_CHANNELS - sent
    followed = [
        "vm_get_list", "user_get_list", "host_get_list", "osf_get_list", "di_get_list",
        "tag_get_list", "tenant_get_list", "administrator_get_list", "role_get_list",
        "acl_get_list", "config_get", "current_admin_setup", "qvd_objects_statistics",
    ]  # fmt: skip
    for name in followed:
        assert notifyhub.channels_for(CATALOGUE[name]), name
    for name in ("log_get_list", "property_get_list", "dis_in_staging"):  # polled every 2 s
        assert not notifyhub.channels_for(CATALOGUE[name]), name
