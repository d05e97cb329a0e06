"""Virtual machines: the list (live state)."""

from __future__ import annotations

from qvd.wat.lists import Column, ListView, list_router

__all__ = ["VIEW", "router"]

VIEW = ListView(
    object="vm",
    path="/vms",
    title="Virtual machines",
    list_action="vm_get_list",
    columns=(
        Column("id", "Id", "number"),
        Column("name", "Name", link="/vms/{id}"),
        Column("user_name", "User", link="/users/{user_id}", acl="vm.see.user"),
        Column("osf_name", "OS flavour", link="/osfs/{osf_id}", acl="vm.see.osf"),
        Column("di_tag", "Tag", acl="vm.see.di-tag"),
        Column("state", "State", "state", acl="vm.see.state"),
        Column("user_state", "User state", "state", acl="vm.see.user-state"),
        Column("host_name", "Node", link="/hosts/{host_id}", acl="vm.see.host"),
        Column("blocked", "Blocked", "bool", acl="vm.see.block"),
    ),
    search=("name",),
    detail="/vms/{id}",
    live=("state", "user_state", "host_name", "blocked"),
)

router = list_router(VIEW)
