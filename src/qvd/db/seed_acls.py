"""Seed data of schema revision 0001: the ACL names and the built-in roles
(reference §5.5-5.6).

Frozen with that revision: a later change to ACLs or built-in roles is a new
migration with its own data, never an edit here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACLS",
    "ALL_ACLS",
    "ALL_BUILTIN_ROLES",
    "BUILTIN_ROLES",
    "LATER_ACLS",
    "OBJECT_ROLE_PREFIXES",
    "POLICY_ACLS",
    "POLICY_ROLES",
    "POLICY_ROLE_PARENTS",
    "SESSION_ACLS",
    "RoleSpec",
    "acls_matching",
]

_ACL_TEXT: dict[str, str] = {
    "administrator": """create. create.language delete. see.acl-list see.acl-list-roles
        see.created-by see.creation-date see.description see-details. see.id see.language
        see.log see-main. see.roles update.assign-role update.description update.language
        update.password""",
    "config": "qvd. wat.",
    "di": """create. create.default create.properties create.tags create.version
        create.generation delete. see.block see.created-by see.creation-date see.default
        see.description see-details. see.head see.id see.log see-main. see.osf see.properties
        see.tags see.version see.vm-list see.vm-list-block see.vm-list-expiration
        see.vm-list-state see.vm-list-user-state stats.blocked stats.summary update.block
        update.default update.description update.properties update.tags update.auto-publish
        update.vms-expiration update.publish""",
    "host": """create. create.properties delete. see.address see.block see.created-by
        see.creation-date see.description see-details. see.id see.log see-main.
        see.properties see.state see.vm-list see.vm-list-block see.vm-list-expiration
        see.vm-list-state see.vm-list-user-state see.vms-info stats.blocked
        stats.running-hosts stats.summary stats.top-hosts-most-vms update.address
        update.block update.description update.name update.properties update.stop-vms""",
    "log": "see.address see.administrator see.call-arguments see-details. see-main. see.source",
    "osf": """create. create.memory create.properties create.user-storage delete.
        see.created-by see.creation-date see.description see-details. see.di-list
        see.di-list-block see.di-list-default see.di-list-default-update see.di-list-head
        see.di-list-tags see.dis-info see.id see.log see-main. see.memory see.overlay
        see.properties see.user-storage see.vm-list see.vm-list-block see.vm-list-expiration
        see.vm-list-state see.vm-list-user-state see.vms-info stats.summary
        update.description update.memory update.name update.properties update.user-storage""",
    "property": "see-main. manage.",
    "role": """create. delete. see.acl-list see.acl-list-roles see.created-by
        see.creation-date see.description see-details. see.id see.inherited-roles see.log
        see-main. update.assign-acl update.assign-role update.description update.name""",
    "tenant": """create. delete. purge. see.block see.blocksize see.created-by
        see.creation-date see.description see-details. see.di-list see.di-list-block
        see.di-list-tags see.id see.language see.log see-main. see.user-list
        see.user-list-block see.vm-list see.vm-list-block see.vm-list-expiration
        see.vm-list-state see.vm-list-user-state update.block update.blocksize
        update.description update.language update.name""",
    "user": """create. create.properties delete. see.block see.created-by see.creation-date
        see.description see-details. see.id see.log see-main. see.properties see.vm-list
        see.vm-list-block see.vm-list-expiration see.vm-list-state see.vm-list-user-state
        see.vms-info stats.blocked stats.connected-users stats.summary update.block
        update.description update.password update.properties""",
    "views": "see-main. update.columns update.filters-desktop update.filters-mobile",
    "vm": """create. create.di-tag create.properties delete. see.block see.created-by
        see.creation-date see.description see-details. see.di see.di-tag see.di-version
        see.expiration see.host see.id see.ip see.log see.mac see-main. see.next-boot-ip
        see.osf see.port-serial see.port-ssh see.port-vnc see.properties see.state see.user
        see.user-state spy. spy.interactive stats.blocked stats.close-to-expire
        stats.running-vms stats.summary update.block update.description
        update.disconnect-user update.di-tag update.expiration update.name
        update.properties update.state""",
}

ACLS: tuple[str, ...] = tuple(
    f"{obj}.{suffix}" for obj, text in _ACL_TEXT.items() for suffix in text.split()
)

# Object families of built-in roles: role name word -> ACL prefix.
OBJECT_ROLE_PREFIXES: dict[str, str] = {
    "Administrators": "administrator.",
    "Images": "di.",
    "Nodes": "host.",
    "OSFs": "osf.",
    "Roles": "role.",
    "Tenants": "tenant.",
    "Users": "user.",
    "VMs": "vm.",
}

# Operational actions: what an "Operator" does without editing objects.
_OPERATOR_ACLS = frozenset(
    {
        *("vm.update.state", "vm.update.block", "vm.update.disconnect-user"),
        *("vm.update.expiration", "vm.spy.", "vm.spy.interactive"),
        *("user.update.block", "host.update.block", "host.update.stop-vms"),
        *("di.update.block", "di.update.publish", "di.update.vms-expiration"),
        "tenant.update.block",
    }
)


def acls_matching(prefix: str, kind: str) -> list[str]:
    """The ACLs of one object (``prefix``) that a role of ``kind`` grants."""
    own = [a for a in ACLS if a.startswith(prefix)]
    rest = [a[len(prefix) :] for a in own]
    pick: list[str] = []
    for full, short in zip(own, rest, strict=True):
        if (
            (kind == "Reader" and short.startswith(("see", "stats.")))
            or (kind == "Creator" and short.startswith("create."))
            or (kind == "Eraser" and short in {"delete.", "purge."})
            or (kind == "Operator" and full in _OPERATOR_ACLS)
            or (kind == "Updater" and short.startswith("update.") and full not in _OPERATOR_ACLS)
        ):
            pick.append(full)
    return pick


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleSpec:
    """A built-in role: its own ACLs and the roles it inherits."""

    name: str
    acls: tuple[str, ...] = ()
    inherits: tuple[str, ...] = ()
    internal: bool = True


def _builtin_roles() -> tuple[RoleSpec, ...]:
    kinds = ("Creator", "Eraser", "Operator", "Reader", "Updater")
    roles: list[RoleSpec] = []
    for word, prefix in OBJECT_ROLE_PREFIXES.items():
        for kind in kinds:
            roles.append(RoleSpec(name=f"{word} {kind}", acls=tuple(acls_matching(prefix, kind))))
        roles.append(RoleSpec(name=f"{word} Manager", inherits=tuple(f"{word} {k}" for k in kinds)))
    qvd_objects = ("Users", "VMs", "OSFs", "Images")
    for kind in kinds:
        roles.append(
            RoleSpec(name=f"QVD {kind}", inherits=tuple(f"{o} {kind}" for o in qvd_objects))
        )
    roles += [
        RoleSpec(name="QVD Config Manager",
                 acls=("config.qvd.", "property.see-main.", "property.manage.")),
        RoleSpec(name="WAT Config Manager", acls=("config.wat.",)),
        RoleSpec(name="Views Reader", acls=("views.see-main.",)),
        RoleSpec(name="Views Operator",
                 acls=("views.update.columns", "views.update.filters-desktop",
                       "views.update.filters-mobile")),
        RoleSpec(name="Views Manager", inherits=("Views Reader", "Views Operator")),
        RoleSpec(name="Logs Manager", acls=tuple(a for a in ACLS if a.startswith("log."))),
        RoleSpec(name="QVD Manager",
                 inherits=(*(f"{o} Manager" for o in qvd_objects), "QVD Config Manager")),
        RoleSpec(name="WAT Manager",
                 inherits=("Administrators Manager", "Roles Manager", "Views Manager",
                           "Logs Manager", "WAT Config Manager")),
        RoleSpec(name="Master", inherits=("QVD Manager", "WAT Manager")),
        RoleSpec(name="Total Master", inherits=("Master", "Nodes Manager", "Tenants Manager")),
        RoleSpec(name="Root", inherits=("Total Master",), internal=False),
        RoleSpec(name="Operator L1", inherits=("QVD Reader",), internal=False),
        RoleSpec(name="Operator L2", inherits=("QVD Operator", "Operator L1"), internal=False),
        RoleSpec(name="Operator L3",
                 inherits=("Operator L2", "Nodes Manager", "QVD Creator", "QVD Updater",
                           "QVD Eraser"),
                 internal=False),
    ]  # fmt: skip
    return tuple(roles)


BUILTIN_ROLES: tuple[RoleSpec, ...] = _builtin_roles()


# ---- added by revision 0009 (the fleet): policies -------------------------------------------
# (ACLS and BUILTIN_ROLES above stay as 0003 seeded them; 0009 adds these rows)
POLICY_ACLS: tuple[str, ...] = (
    "policy.create.",
    "policy.delete.",
    "policy.see-main.",
    "policy.update.",
)
POLICY_ROLES: tuple[RoleSpec, ...] = (
    RoleSpec(name="Policies Reader", acls=("policy.see-main.",)),
    RoleSpec(name="Policies Creator", acls=("policy.create.",)),
    RoleSpec(name="Policies Updater", acls=("policy.update.",)),
    RoleSpec(name="Policies Eraser", acls=("policy.delete.",)),
    RoleSpec(
        name="Policies Manager",
        inherits=("Policies Reader", "Policies Creator", "Policies Updater", "Policies Eraser"),
    ),
)
# built-in role -> the policy role it inherits from 0009 on
POLICY_ROLE_PARENTS: dict[str, str] = {
    "QVD Reader": "Policies Reader",
    "QVD Creator": "Policies Creator",
    "QVD Updater": "Policies Updater",
    "QVD Eraser": "Policies Eraser",
    "QVD Manager": "Policies Manager",
}
SESSION_ACLS: tuple[str, ...] = ("session.see",)
"""0009: the session history (granted to "Logs Manager")."""
LATER_ACLS: tuple[str, ...] = (*POLICY_ACLS, *SESSION_ACLS)
"""The ACLs later revisions added, each inserted by its migration."""
ALL_ACLS: tuple[str, ...] = (*ACLS, *LATER_ACLS)
"""Every ACL at the head revision."""
ALL_BUILTIN_ROLES: tuple[RoleSpec, ...] = BUILTIN_ROLES + POLICY_ROLES
