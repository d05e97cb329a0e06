"""The data model (reference §1, DESIGN §2) as SQLAlchemy 2 declarative classes.

Departures from QVD, on purpose:
- passwords hold argon2 hashes (per-password salt), nullable (no password = no login);
- bearer tokens and API sessions are stored as SHA-256 digests, never in clear;
- ``di_tags`` carries the OSF of its DI (filled by a trigger, kept honest by a composite
  foreign key) so that one tag per OSF is a database constraint, not application code;
  tags asked for on a DI that is not yet published wait in ``dis.pending_tags``;
- runtime and counter rows are created by triggers with their parent rows;
- timestamps are ``timestamptz``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "DEVICE_TYPES",
    "DI_STATES",
    "HOST_CMDS",
    "HOST_STATES",
    "ID_START",
    "LANGUAGES",
    "LOG_ACTION_TYPES",
    "LOG_OBJECTS",
    "POLICY_KINDS",
    "PROPERTY_OBJECTS",
    "SESSION_KINDS",
    "UNPRINTABLE",
    "USER_CMDS",
    "USER_STATES",
    "VIEW_OBJECTS",
    "VIEW_TYPES",
    "VM_CMDS",
    "VM_STATES",
    "Acl",
    "AclRoleRelation",
    "Administrator",
    "AdministratorView",
    "ApiSession",
    "AuditLog",
    "Base",
    "Config",
    "Di",
    "DiProperty",
    "DiRuntime",
    "DiTag",
    "Host",
    "HostCounter",
    "HostProperty",
    "HostRuntime",
    "NodeJoinToken",
    "Osf",
    "OsfProperty",
    "Policy",
    "PropertyAssignment",
    "PropertyDefinition",
    "Role",
    "RoleAdministratorRelation",
    "RoleRoleRelation",
    "SessionHistory",
    "SslConfig",
    "Tenant",
    "TenantView",
    "User",
    "UserAuthParameters",
    "UserProperty",
    "UserToken",
    "UserTotpUse",
    "Vm",
    "VmCounter",
    "VmProperty",
    "VmRuntime",
    "VmSpyTicket",
]

ID_START = 10000

VM_STATES = ("stopped", "starting", "running", "stopping", "zombie", "debugging")
VM_CMDS = ("start", "stop", "busy")
USER_STATES = ("disconnected", "connecting", "connected")
USER_CMDS = ("abort",)
HOST_STATES = ("stopped", "starting", "running", "stopping", "lost")
HOST_CMDS = ("stop",)
LANGUAGES = ("es", "en", "auto", "default")
DI_STATES = (
    "new", "generating", "fail", "uploading", "upload_stalled", "verifying", "ready",
    "published", "retired",
)  # fmt: skip
LOG_ACTION_TYPES = ("create", "create_or_update", "delete", "see", "update", "exec", "login")
LOG_OBJECTS = (
    "user", "vm", "log", "host", "osf", "di", "role", "administrator", "tenant", "acl",
    "config", "tenant_view", "admin_view", "property",
)  # fmt: skip
PROPERTY_OBJECTS = ("user", "vm", "host", "osf", "di")
VIEW_OBJECTS = ("user", "vm", "log", "host", "osf", "di", "role", "administrator", "tenant")
VIEW_TYPES = ("list_column", "filter")
DEVICE_TYPES = ("desktop", "mobile")

_naming = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

language_enum = Enum(*LANGUAGES, name="language_enum")
di_state_enum = Enum(*DI_STATES, name="di_state_enum")
log_action_enum = Enum(*LOG_ACTION_TYPES, name="log_type_of_action_enum")
log_object_enum = Enum(*LOG_OBJECTS, name="log_qvd_object_enum")
property_object_enum = Enum(*PROPERTY_OBJECTS, name="property_object_enum")
view_object_enum = Enum(*VIEW_OBJECTS, name="view_qvd_object_enum")
view_type_enum = Enum(*VIEW_TYPES, name="view_type_enum")
device_type_enum = Enum(*DEVICE_TYPES, name="view_device_type_enum")

TS = DateTime(timezone=True)

UNPRINTABLE = r"[\u0001-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
"""A PostgreSQL regular expression for the characters no name may hold (controls, line
and paragraph separators, bidi and zero-width formatting): the CHECK constraints
``ck_<table>_<column>_printable`` of migration 0005. The full rules are
``qvd.config.names``; this is their cheap last line in the database."""


def _printable(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} !~ '{UNPRINTABLE}'", name=f"{column}_printable")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_naming)
    type_annotation_map: dict[Any, Any] = {dt.datetime: TS}


def _id() -> Mapped[int]:
    return mapped_column(Integer, Identity(start=ID_START), primary_key=True)


def _tenant_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


class _Created:
    """Who created a row, and when (shown by the API)."""

    creation_admin_id: Mapped[int | None] = mapped_column(Integer)
    creation_date: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now())


# ---- lookup tables (state and command names, FK targets) ---------------------------------
class _Lookup:
    name: Mapped[str] = mapped_column(String(12), primary_key=True)


class VmState(_Lookup, Base):
    __tablename__ = "vm_states"


class VmCmd(_Lookup, Base):
    __tablename__ = "vm_cmds"


class UserState(_Lookup, Base):
    __tablename__ = "user_states"


class UserCmd(_Lookup, Base):
    __tablename__ = "user_cmds"


class HostState(_Lookup, Base):
    __tablename__ = "host_states"


class HostCmd(_Lookup, Base):
    __tablename__ = "host_cmds"


LOOKUPS: dict[str, tuple[str, ...]] = {
    "vm_states": VM_STATES,
    "vm_cmds": VM_CMDS,
    "user_states": USER_STATES,
    "user_cmds": USER_CMDS,
    "host_states": HOST_STATES,
    "host_cmds": HOST_CMDS,
}


# ---- tenants, administrators, roles, ACLs -------------------------------------------------
class Tenant(_Created, Base):
    __tablename__ = "tenants"
    __table_args__ = (_printable("name"),)
    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(80), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str] = mapped_column(language_enum, server_default="auto")
    block: Mapped[int] = mapped_column(Integer, server_default="10")
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class Administrator(_Created, Base):
    __tablename__ = "administrators"
    __table_args__ = (UniqueConstraint("name", "tenant_id"),)
    id: Mapped[int] = _id()
    tenant_id: Mapped[int] = _tenant_fk()
    name: Mapped[str] = mapped_column(String(64))
    password: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str] = mapped_column(language_enum, server_default="auto")
    block: Mapped[int] = mapped_column(Integer, server_default="10")


class Role(_Created, Base):
    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("name", "tenant_id"),)
    id: Mapped[int] = _id()
    tenant_id: Mapped[int] = _tenant_fk()
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    fixed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class Acl(Base):
    __tablename__ = "acls"
    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(String(80))


class AclRoleRelation(Base):
    """``positive=false`` is an explicit deny on that role."""

    __tablename__ = "acl_role_relations"
    __table_args__ = (UniqueConstraint("role_id", "acl_id"),)
    id: Mapped[int] = _id()
    acl_id: Mapped[int] = mapped_column(ForeignKey("acls.id", ondelete="CASCADE"), index=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    positive: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class RoleRoleRelation(Base):
    __tablename__ = "role_role_relations"
    __table_args__ = (
        UniqueConstraint("inheritor_id", "inherited_id"),
        CheckConstraint("inheritor_id <> inherited_id", name="not_self"),
    )
    id: Mapped[int] = _id()
    inheritor_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    inherited_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), index=True
    )


class RoleAdministratorRelation(Base):
    __tablename__ = "role_administrator_relations"
    __table_args__ = (UniqueConstraint("administrator_id", "role_id"),)
    id: Mapped[int] = _id()
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), index=True)
    administrator_id: Mapped[int] = mapped_column(
        ForeignKey("administrators.id", ondelete="CASCADE")
    )


# ---- users, OSFs, DIs, VMs, hosts --------------------------------------------------------
class User(_Created, Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("login", "tenant_id"), _printable("login"))
    id: Mapped[int] = _id()
    tenant_id: Mapped[int] = _tenant_fk()
    login: Mapped[str] = mapped_column(String(64))
    password: Mapped[str | None] = mapped_column(String(255))
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    description: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str] = mapped_column(language_enum, server_default="auto")


class Osf(_Created, Base):
    """Operating system flavour: what VMs and DIs of one kind share."""

    __tablename__ = "osfs"
    __table_args__ = (
        UniqueConstraint("name", "tenant_id"),
        CheckConstraint("memory > 0", name="memory_positive"),
        _printable("name"),
    )
    id: Mapped[int] = _id()
    tenant_id: Mapped[int] = _tenant_fk()
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    memory: Mapped[int] = mapped_column(Integer, server_default="256")
    use_overlay: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    is_application: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    user_storage_size: Mapped[int | None] = mapped_column(Integer)
    osd_id: Mapped[int | None] = mapped_column(Integer)


class Di(_Created, Base):
    """A disk image of one OSF."""

    __tablename__ = "dis"
    __table_args__ = (
        UniqueConstraint("osf_id", "version"),
        UniqueConstraint("id", "osf_id", name="uq_dis_id_osf_id"),
        _printable("path"),
    )
    id: Mapped[int] = _id()
    osf_id: Mapped[int] = mapped_column(ForeignKey("osfs.id", ondelete="CASCADE"), index=True)
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    description: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str] = mapped_column(String(4096))
    version: Mapped[str] = mapped_column(String(64))
    pending_tags: Mapped[list[str]] = mapped_column(
        ARRAY(String(1024)), server_default=text("'{}'::varchar[]")
    )


class DiTag(Base):
    """A tag of a DI; one tag per OSF, enforced by UNIQUE(osf_id, tag)."""

    __tablename__ = "di_tags"
    __table_args__ = (
        UniqueConstraint("osf_id", "tag"),
        ForeignKeyConstraint(
            ["di_id", "osf_id"],
            ["dis.id", "dis.osf_id"],
            ondelete="CASCADE",
            onupdate="CASCADE",
            name="fk_di_tags_di_osf",
        ),
    )
    id: Mapped[int] = _id()
    di_id: Mapped[int] = mapped_column(Integer, index=True)
    osf_id: Mapped[int] = mapped_column(Integer)
    tag: Mapped[str] = mapped_column(String(1024))
    fixed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class DiRuntime(Base):
    __tablename__ = "di_runtimes"
    di_id: Mapped[int] = mapped_column(ForeignKey("dis.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(di_state_enum, server_default="new")
    state_ts: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now())
    elapsed_time: Mapped[int | None] = mapped_column(Integer)
    auto_publish: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    foreign_id: Mapped[int | None] = mapped_column(Integer)
    expiration_time_soft: Mapped[int | None] = mapped_column(Integer)
    expiration_time_hard: Mapped[int | None] = mapped_column(Integer)
    percentage: Mapped[float] = mapped_column(Float, server_default="0")
    error_code: Mapped[int | None] = mapped_column(Integer)
    status_message: Mapped[str | None] = mapped_column(Text)


class Host(_Created, Base):
    """A node; ``name`` equals the node's ``nodename``."""

    __tablename__ = "hosts"
    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(127), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str] = mapped_column(String(127), unique=True)
    frontend: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    backend: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class HostRuntime(Base):
    """Written by the node's HKD: heartbeat, live load, state; ``cmd`` by admins."""

    __tablename__ = "host_runtimes"
    host_id: Mapped[int] = mapped_column(
        ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    pid: Mapped[int | None] = mapped_column(Integer)
    ok_ts: Mapped[dt.datetime | None] = mapped_column(TS)
    usable_ram: Mapped[float | None] = mapped_column(Float)
    usable_cpu: Mapped[float | None] = mapped_column(Float)
    free_ram_mb: Mapped[float | None] = mapped_column(Float)
    idle_cpu: Mapped[float | None] = mapped_column(Float)
    running_vms: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(ForeignKey("host_states.name"), server_default="stopped")
    state_ts: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now())
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    cmd: Mapped[str | None] = mapped_column(ForeignKey("host_cmds.name"))
    # JSON of what the node's backend chose at its HKD's start (backend, accel, ...)
    backend_facts: Mapped[str | None] = mapped_column(Text)


class HostCounter(Base):
    __tablename__ = "host_counters"
    host_id: Mapped[int] = mapped_column(
        ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    http_requests: Mapped[int] = mapped_column(Integer, server_default="0")
    auth_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    auth_ok: Mapped[int] = mapped_column(Integer, server_default="0")
    nx_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    nx_ok: Mapped[int] = mapped_column(Integer, server_default="0")
    short_sessions: Mapped[int] = mapped_column(Integer, server_default="0")


class Vm(_Created, Base):
    __tablename__ = "vms"
    __table_args__ = (
        UniqueConstraint("name", "user_id"),
        UniqueConstraint("ip"),
        _printable("name"),
    )
    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    osf_id: Mapped[int] = mapped_column(ForeignKey("osfs.id", ondelete="RESTRICT"), index=True)
    di_tag: Mapped[str] = mapped_column(String(128), server_default="default")
    ip: Mapped[str | None] = mapped_column(String(45))
    storage: Mapped[str | None] = mapped_column(String(4096))


class VmRuntime(Base):
    """What runs: written by the HKD (state, addresses), the L7R (user state) and the
    API or L7R (``vm_cmd``, ``user_cmd``, ``host_id``, expirations, ``blocked``)."""

    __tablename__ = "vm_runtimes"
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True)
    host_id: Mapped[int | None] = mapped_column(
        ForeignKey("hosts.id", ondelete="SET NULL"), index=True
    )
    current_osf_id: Mapped[int | None] = mapped_column(ForeignKey("osfs.id", ondelete="SET NULL"))
    current_di_id: Mapped[int | None] = mapped_column(
        ForeignKey("dis.id", ondelete="SET NULL"), index=True
    )
    user_ip: Mapped[str | None] = mapped_column(String(45))
    real_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    vm_state: Mapped[str] = mapped_column(
        ForeignKey("vm_states.name"), server_default="stopped", index=True
    )
    vm_state_ts: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now())
    vm_cmd: Mapped[str | None] = mapped_column(ForeignKey("vm_cmds.name"))
    vm_pid: Mapped[int | None] = mapped_column(Integer)
    user_state: Mapped[str] = mapped_column(
        ForeignKey("user_states.name"), server_default="disconnected"
    )
    user_state_ts: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now())
    user_cmd: Mapped[str | None] = mapped_column(ForeignKey("user_cmds.name"))
    vma_ok_ts: Mapped[dt.datetime | None] = mapped_column(TS)
    l7r_host_id: Mapped[int | None] = mapped_column(
        ForeignKey("hosts.id", ondelete="SET NULL"), index=True
    )
    l7r_pid: Mapped[int | None] = mapped_column(Integer)
    vm_address: Mapped[str | None] = mapped_column(String(127))
    vm_vma_port: Mapped[int | None] = mapped_column(Integer)
    vm_x_port: Mapped[int | None] = mapped_column(Integer)
    vm_ssh_port: Mapped[int | None] = mapped_column(Integer)
    vm_vnc_port: Mapped[int | None] = mapped_column(Integer)
    vm_mon_port: Mapped[int | None] = mapped_column(Integer)
    vm_serial_port: Mapped[int | None] = mapped_column(Integer)
    blocked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    vm_expiration_soft: Mapped[dt.datetime | None] = mapped_column(TS)
    vm_expiration_hard: Mapped[dt.datetime | None] = mapped_column(TS)
    last_error: Mapped[str | None] = mapped_column(Text)


class VmCounter(Base):
    __tablename__ = "vm_counters"
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True)
    run_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    run_ok: Mapped[int] = mapped_column(Integer, server_default="0")


# ---- configuration -------------------------------------------------------------------------
class Config(Base):
    """A configuration token's value: tenant -1 is global, others override per tenant."""

    __tablename__ = "configs"
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(4096))


class SslConfig(Base):
    """PEM material for the L7R (``l7r.ssl.key``, ``l7r.ssl.cert``, ``l7r.ssl.ca``, ...)."""

    __tablename__ = "ssl_configs"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# ---- custom properties ---------------------------------------------------------------------
class PropertyDefinition(Base):
    """A custom property key registered for a tenant (QVD's ``properties_list``)."""

    __tablename__ = "properties_list"
    __table_args__ = (UniqueConstraint("key", "tenant_id"),)
    id: Mapped[int] = _id()
    key: Mapped[str] = mapped_column(String(1024))
    tenant_id: Mapped[int] = _tenant_fk()
    description: Mapped[str | None] = mapped_column(Text)


class PropertyAssignment(Base):
    """Which object type may carry a property (QVD's ``qvd_object_properties_list``)."""

    __tablename__ = "qvd_object_properties_list"
    __table_args__ = (UniqueConstraint("property_id", "qvd_object"),)
    id: Mapped[int] = _id()
    property_id: Mapped[int] = mapped_column(ForeignKey("properties_list.id", ondelete="CASCADE"))
    qvd_object: Mapped[str] = mapped_column(property_object_enum)


def _property_fk() -> Mapped[int]:
    return mapped_column(
        ForeignKey("qvd_object_properties_list.id", ondelete="CASCADE"), primary_key=True
    )


class UserProperty(Base):
    __tablename__ = "user_properties"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    property_id: Mapped[int] = _property_fk()
    value: Mapped[str] = mapped_column(Text)


class VmProperty(Base):
    __tablename__ = "vm_properties"
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True)
    property_id: Mapped[int] = _property_fk()
    value: Mapped[str] = mapped_column(Text)


class HostProperty(Base):
    __tablename__ = "host_properties"
    host_id: Mapped[int] = mapped_column(
        ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    property_id: Mapped[int] = _property_fk()
    value: Mapped[str] = mapped_column(Text)


class OsfProperty(Base):
    __tablename__ = "osf_properties"
    osf_id: Mapped[int] = mapped_column(ForeignKey("osfs.id", ondelete="CASCADE"), primary_key=True)
    property_id: Mapped[int] = _property_fk()
    value: Mapped[str] = mapped_column(Text)


class DiProperty(Base):
    __tablename__ = "di_properties"
    di_id: Mapped[int] = mapped_column(ForeignKey("dis.id", ondelete="CASCADE"), primary_key=True)
    property_id: Mapped[int] = _property_fk()
    value: Mapped[str] = mapped_column(Text)


# ---- WAT views: which list columns and filters the web admin shows ---------------------------
class _ViewSetup:
    """One column or filter of a WAT list: ``field`` is a list field of ``qvd_object``
    or, when ``is_property``, a custom property key."""

    qvd_object: Mapped[str] = mapped_column(view_object_enum)
    view_type: Mapped[str] = mapped_column(view_type_enum)
    device_type: Mapped[str] = mapped_column(device_type_enum)
    field: Mapped[str] = mapped_column(String(1024))
    is_property: Mapped[bool] = mapped_column("property", Boolean, server_default=text("false"))
    visible: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class TenantView(_ViewSetup, Base):
    """A tenant's default view (the WAT's ``#views``)."""

    __tablename__ = "tenant_views"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "qvd_object", "view_type", "device_type", "field", "property",
            name="uq_tenant_views_setup",
        ),
    )  # fmt: skip
    id: Mapped[int] = _id()
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))


class AdministratorView(_ViewSetup, Base):
    """An administrator's own view (the WAT's ``#myviews``), over the tenant's."""

    __tablename__ = "administrator_views"
    __table_args__ = (
        UniqueConstraint(
            "administrator_id", "qvd_object", "view_type", "device_type", "field", "property",
            name="uq_administrator_views_setup",
        ),
    )  # fmt: skip
    id: Mapped[int] = _id()
    administrator_id: Mapped[int] = mapped_column(
        ForeignKey("administrators.id", ondelete="CASCADE")
    )


# ---- audit log, sessions, tokens -----------------------------------------------------------
class AuditLog(Base):
    """One row per admin action and login; names are copied so history survives deletes."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, Identity(start=ID_START), primary_key=True)
    administrator_id: Mapped[int | None] = mapped_column(Integer, index=True)
    administrator_name: Mapped[str | None] = mapped_column(String(64))
    tenant_id: Mapped[int | None] = mapped_column(Integer, index=True)
    tenant_name: Mapped[str | None] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(80))
    type_of_action: Mapped[str] = mapped_column(log_action_enum)
    arguments: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    qvd_object: Mapped[str | None] = mapped_column(log_object_enum)
    object_id: Mapped[int | None] = mapped_column(Integer)
    object_name: Mapped[str | None] = mapped_column(String(1024))
    time: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now(), index=True)
    status: Mapped[int] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(String(80))
    ip: Mapped[str | None] = mapped_column(String(45))
    superadmin: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class ApiSession(Base):
    """An admin session; the client holds the token, the database its SHA-256."""

    __tablename__ = "api_sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    administrator_id: Mapped[int] = mapped_column(
        ForeignKey("administrators.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    created: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now())
    last_used: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now())
    expires: Mapped[dt.datetime] = mapped_column(TS, index=True)
    ip: Mapped[str | None] = mapped_column(String(45))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class UserAuthParameters(Base):
    """Auth parameters (e.g. LDAP uid/gid) kept for later bearer-token logins."""

    __tablename__ = "user_auth_parameters"
    id: Mapped[int] = _id()
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now())


class UserToken(Base):
    """An L7R bearer token; the database holds its SHA-256 only."""

    __tablename__ = "user_tokens"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    vm_id: Mapped[int | None] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"))
    expiration: Mapped[dt.datetime] = mapped_column(TS, index=True)
    auth_params_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_auth_parameters.id", ondelete="SET NULL")
    )
    multi_use: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    password_fp: Mapped[str] = mapped_column(String(64), server_default="")


class VmSpyTicket(Base):
    """An administrator's one-time pass to shadow one VM from the browser (the API's
    ``vm_spy`` issues it, the portal's ``/ws/spy`` uses it once); SHA-256 only."""

    __tablename__ = "vm_spy_tickets"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), index=True)
    administrator_id: Mapped[int] = mapped_column(
        ForeignKey("administrators.id", ondelete="CASCADE")
    )
    administrator_name: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[int] = mapped_column(Integer)
    interactive: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    expiration: Mapped[dt.datetime] = mapped_column(TS, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(TS)
    address: Mapped[str | None] = mapped_column(String(45))


class UserTotpUse(Base):
    """The last one-time-code step a user logged in with (a code is used once, but for
    one reuse by the same address right after: the client's list → connect pair)."""

    __tablename__ = "user_totp_uses"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(BigInteger)
    address: Mapped[str] = mapped_column(String(45))
    used_at: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now())
    reuses: Mapped[int] = mapped_column(Integer, server_default="0")


# ---- the fleet (migration 0009) -----------------------------------------------------------
SESSION_KINDS = ("login", "connect", "takeover")
POLICY_KINDS = (
    "idle_stop",  # stop a desktop disconnected for ``minutes``
    "idle_suspend",  # suspend (X session) a desktop disconnected for ``minutes``
    "max_session",  # end a connection older than ``minutes``
    "scheduled_start",  # start the desktops at ``at_minute`` on ``weekdays``
    "scheduled_stop",  # stop them at ``at_minute`` on ``weekdays``
    "warm_pool",  # keep ``size`` desktops of the users who usually log in now running
)


class SessionHistory(Base):
    """One end user's login (``kind`` login: the L7R's authentication, whatever the
    result), or one connection to a desktop (``connect``; ``takeover`` when it took the
    session from another connection, which then ends with ``end_reason`` taken_over).

    Names are copied, not referenced: the history outlives the users, VMs and nodes it
    names. ``result`` is ``ok`` or a short failure code; ``detail`` says more."""

    __tablename__ = "session_history"
    __table_args__ = (
        CheckConstraint("kind IN ('login', 'connect', 'takeover')", name="kind"),
        Index("ix_session_history_tenant_started", "tenant_id", "started_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    result: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(256))
    tenant_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    login: Mapped[str] = mapped_column(String(128))
    vm_id: Mapped[int | None] = mapped_column(Integer, index=True)
    vm_name: Mapped[str | None] = mapped_column(String(64))
    host_id: Mapped[int | None] = mapped_column(Integer)
    host_name: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(45))
    client_info: Mapped[str | None] = mapped_column(String(128))
    transport: Mapped[str | None] = mapped_column(String(8))
    started_at: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now(), index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(TS)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    bytes_in: Mapped[int | None] = mapped_column(BigInteger)
    bytes_out: Mapped[int | None] = mapped_column(BigInteger)


class Policy(_Created, Base):
    """A rule the policy leader (one node at a time) applies to a tenant's desktops, or
    to one OSF's (``osf_id``). Which columns a kind reads: ``POLICY_KINDS``; times are
    minutes of the day in ``timezone``, ``weekdays`` a bit mask (Monday = 1 … Sunday
    = 64)."""

    __tablename__ = "policies"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(
            "kind IN ('idle_stop', 'idle_suspend', 'max_session', 'scheduled_start',"
            " 'scheduled_stop', 'warm_pool')",
            name="kind",
        ),
        CheckConstraint("minutes IS NULL OR minutes > 0", name="minutes_positive"),
        CheckConstraint("at_minute IS NULL OR at_minute BETWEEN 0 AND 1439", name="at_minute"),
        CheckConstraint("weekdays BETWEEN 0 AND 127", name="weekdays"),
        CheckConstraint("size IS NULL OR size >= 0", name="size"),
        _printable("name"),
    )
    id: Mapped[int] = _id()
    tenant_id: Mapped[int] = _tenant_fk()
    osf_id: Mapped[int | None] = mapped_column(ForeignKey("osfs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    minutes: Mapped[int | None] = mapped_column(Integer)
    at_minute: Mapped[int | None] = mapped_column(Integer)
    weekdays: Mapped[int] = mapped_column(Integer, server_default="127")
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    size: Mapped[int | None] = mapped_column(Integer)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(TS)


class NodeJoinToken(Base):
    """A one-time pass for ``qvd node join`` (made by ``qvd node token``): SHA-256 only,
    valid until ``expiration``, used once (``used_at``, ``used_by_host``)."""

    __tablename__ = "node_join_tokens"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    host_name: Mapped[str | None] = mapped_column(String(64))
    expiration: Mapped[dt.datetime] = mapped_column(TS, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(TS)
    used_by_host: Mapped[str | None] = mapped_column(String(64))
    creation_date: Mapped[dt.datetime] = mapped_column(TS, server_default=func.now())
