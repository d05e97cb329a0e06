"""``auto``: after another plugin authenticated a login, create the ``users`` row (no
password) and, if the user has no VM in OSF ``auth.auto.osf_id``, a VM
``<login>-<n>`` (first free n up to ``auth.auto.max_vms``) with ``auth.auto.di_tag``
and the first free address. The OSF must belong to the user's tenant.
List it before the plugin that checks the password, e.g. ``auto,ldap``.

It provisions only into a tenant that turned ``auth.auto.enable`` on for itself (off by
default): naming a tenant in the login (``carol@other``) never creates anything in a
tenant that did not ask for it, even when ``auto`` sits in the global
``l7r.auth.plugins.head`` and the directory is shared; such a login then fails as any
unregistered user does."""

from __future__ import annotations

from sqlalchemy import Connection, text

from qvd.db.vmaddress import free_vm_ip
from qvd.l7r.auth.base import Attempt, AuthContext, AuthPlugin
from qvd.l7r.errors import Unauthorized

__all__ = ["AutoPlugin"]


class AutoPlugin(AuthPlugin):
    name = "auto"

    def after_authenticate(self, ctx: AuthContext, attempt: Attempt) -> None:
        conn, tenant = ctx.conn, attempt.tenant_id
        if not ctx.config.get_bool("auth.auto.enable", tenant):
            return
        osf_id = self._osf(ctx, attempt)
        user_id = _lock_user(conn, tenant, attempt.login)
        has_vm = conn.execute(
            text("SELECT 1 FROM vms WHERE user_id = :u AND osf_id = :o"),
            {"u": user_id, "o": osf_id},
        ).first()
        if has_vm is not None:
            return
        names = set(
            conn.execute(text("SELECT name FROM vms WHERE user_id = :u"), {"u": user_id}).scalars()
        )
        max_vms = ctx.config.get_int("auth.auto.max_vms", tenant)
        name = next(
            (f"{attempt.login}-{n}" for n in range(1, max_vms + 1)
             if f"{attempt.login}-{n}" not in names),
            None,
        )  # fmt: skip
        if name is None:
            raise Unauthorized(f"auto-provisioning: {attempt.login} already has {max_vms} VMs")
        conn.execute(text("LOCK TABLE vms IN SHARE ROW EXCLUSIVE MODE"))  # one IP pick at a time
        ip = free_vm_ip(
            conn, ctx.config.get("vm.network.ip.start"), ctx.config.get("vm.network.netmask")
        )
        if ip is None:
            raise Unauthorized("auto-provisioning: no free VM address is left")
        conn.execute(
            text(
                "INSERT INTO vms (name, user_id, osf_id, di_tag, ip) VALUES (:n, :u, :o, :t, :ip)"
            ),
            {"n": name, "u": user_id, "o": osf_id, "ip": ip,
             "t": ctx.config.get("auth.auto.di_tag", tenant)},
        )  # fmt: skip

    @staticmethod
    def _osf(ctx: AuthContext, attempt: Attempt) -> int:
        """``auth.auto.osf_id``: it must name an OSF of the user's tenant."""
        osf = ctx.config.raw("auth.auto.osf_id", attempt.tenant_id)
        if not osf:
            raise Unauthorized("auto-provisioning needs auth.auto.osf_id for this tenant")
        osf_id = int(osf)  # the config layer has checked it is an integer
        owner = ctx.conn.execute(
            text("SELECT tenant_id FROM osfs WHERE id = :o"), {"o": osf_id}
        ).scalar()
        if owner != attempt.tenant_id:
            raise Unauthorized(
                f"auth.auto.osf_id {osf_id} is not an OSF of tenant {attempt.tenant!r}"
            )
        return osf_id


def _lock_user(conn: Connection, tenant_id: int, login: str) -> int:
    """The user's id, the row created if missing and locked until the login commits, so
    concurrent first logins of one user create one VM (without rewriting the row, and so
    notifying ``user_changed``, on every login)."""
    select = text("SELECT id FROM users WHERE tenant_id = :t AND login = :l FOR UPDATE")
    args = {"t": tenant_id, "l": login}
    user_id = conn.execute(select, args).scalar()
    if user_id is None:
        conn.execute(
            text(
                "INSERT INTO users (tenant_id, login) VALUES (:t, :l) "
                "ON CONFLICT (login, tenant_id) DO NOTHING"
            ),
            args,
        )
        user_id = conn.execute(select, args).scalar_one()
    return int(user_id)
