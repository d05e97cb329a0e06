"""First initialisation of a QVD database: schema, seed data and the superadmin."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from qvd.db.migrate import schema_status, upgrade
from qvd.db.models import Administrator, Role, RoleAdministratorRelation
from qvd.db.passwords import generate_password, hash_password

__all__ = [
    "SUPERADMIN_NAME",
    "SUPERTENANT_ID",
    "InitResult",
    "initialize_database",
    "reset_admin_password",
]

SUPERADMIN_NAME = "superadmin"
SUPERTENANT_ID = 0
GLOBAL_TENANT_ID = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class InitResult:
    """What ``initialize_database`` did. ``superadmin_password`` is set only when the
    superadmin was created now: show it once, it is stored only as a hash."""

    migrated_from: str | None
    schema: str
    superadmin_password: str | None


def initialize_database(engine: Engine) -> InitResult:
    """Bring the schema to head and create the superadmin if it does not exist."""
    before = schema_status(engine)
    upgrade(engine)
    password: str | None = None
    with Session(engine) as session, session.begin():
        exists = session.scalar(
            select(Administrator.id).where(
                Administrator.name == SUPERADMIN_NAME, Administrator.tenant_id == SUPERTENANT_ID
            )
        )
        if exists is None:
            password = generate_password()
            admin = Administrator(
                tenant_id=SUPERTENANT_ID,
                name=SUPERADMIN_NAME,
                password=hash_password(password),
                description="Superadministrator created by `qvd db init`",
            )
            session.add(admin)
            session.flush()
            root = session.scalar(
                select(Role.id).where(Role.name == "Root", Role.tenant_id == GLOBAL_TENANT_ID)
            )
            if root is None:
                raise RuntimeError("the built-in role Root is missing from the seed data")
            session.add(RoleAdministratorRelation(role_id=root, administrator_id=admin.id))
    after = schema_status(engine)
    return InitResult(migrated_from=before.current, schema=after.head, superadmin_password=password)


def reset_admin_password(engine: Engine, name: str, tenant_id: int = SUPERTENANT_ID) -> str:
    """Give an administrator a new generated password and return it (shown once)."""
    password = generate_password()
    with Session(engine) as session, session.begin():
        admin = session.scalar(
            select(Administrator).where(
                Administrator.name == name, Administrator.tenant_id == tenant_id
            )
        )
        if admin is None:
            raise LookupError(f"no administrator {name!r} in tenant {tenant_id}")
        admin.password = hash_password(password)
    return password
