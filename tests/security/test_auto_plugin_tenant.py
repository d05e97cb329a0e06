"""Attack: a client names another tenant in its login (``carol@other``) and the
``auto`` plugin creates a user and a desktop there.

Before the fix ``auto`` provisioned into whatever tenant the login named, as soon as
the plugin ran for it (in the global ``l7r.auth.plugins.head`` with a shared
directory, every tenant on the platform). Now a tenant gets auto-provisioned users only
if it turned ``auth.auto.enable`` on for itself. Real L7R over TLS, real slapd, real
PostgreSQL; two tenants, both with an OSF for ``auto``, only one enabling it.
"""

from __future__ import annotations

import json

from sqlalchemy import Engine, text

from qvd.config import GLOBAL_TENANT
from tests.l7r.conftest import Lab, lab  # noqa: F401 (the fixture, used by name)
from tests.l7r.ldap_fixture import (
    Directory,
    add_osf,
    add_tenant,
    basic,
    get,
    ldap_settings,
    refused,
    set_config,
    slapd,  # noqa: F401 (the fixture, used by name)
)


def _counts(engine: Engine, tenant_id: int) -> tuple[int, int]:
    """(users, VMs) of one tenant."""
    with engine.begin() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM users WHERE tenant_id = :t), "
                "(SELECT count(*) FROM vms v JOIN users u ON u.id = v.user_id "
                " WHERE u.tenant_id = :t)"
            ),
            {"t": tenant_id},
        ).one()
    return int(row[0]), int(row[1])


def test_auto_provisions_only_into_tenants_that_enable_it(
    lab: Lab,  # noqa: F811
    slapd: Directory,  # noqa: F811
) -> None:
    acme = add_tenant(lab.engine, "acme")
    other = add_tenant(lab.engine, "other")
    acme_osf = add_osf(lab.engine, acme, "auto-desk")
    other_osf = add_osf(lab.engine, other, "desk")
    # auto for everybody, one shared directory: the platform-wide setup of the attack
    set_config(
        lab.engine,
        GLOBAL_TENANT,
        {"l7r.auth.plugins.head": "auto,ldap", **ldap_settings(slapd, "search")},
    )
    set_config(lab.engine, acme, {"auth.auto.enable": "1", "auth.auto.osf_id": str(acme_osf)})
    set_config(lab.engine, other, {"auth.auto.osf_id": str(other_osf)})

    # carol (a valid directory account) names the tenant that never asked for auto
    refused(get(lab, "/qvd/list_of_vm", basic("carol@other", "carolpw")), b"not registered")
    assert _counts(lab.engine, other) == (0, 0), "nothing is created in a tenant merely named"

    # the tenant that enabled it gets its user and desktop
    reply = get(lab, "/qvd/list_of_vm", basic("carol@acme", "carolpw"))
    assert reply.status == 200, reply
    assert [vm["name"] for vm in json.loads(reply.body)] == ["carol-1"]
    assert _counts(lab.engine, acme) == (1, 1)
    assert _counts(lab.engine, other) == (0, 0)
