"""Request and response bodies of the REST face (``/api/v1``), for validation and the
OpenAPI document. The REST names map onto the action arguments: ``properties`` →
``__properties__``, ``tags`` → ``__tags__`` and so on (see ``NESTED``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qvd.config import names

__all__ = [
    "NESTED",
    "AdministratorCreate",
    "AdministratorUpdate",
    "Changes",
    "ConfigSet",
    "Created",
    "DiCreate",
    "DiUpdate",
    "ErrorBody",
    "HostCreate",
    "HostUpdate",
    "Login",
    "OsfCreate",
    "OsfUpdate",
    "Page",
    "PropertyChanges",
    "PropertyCreate",
    "PropertyUpdate",
    "RoleCreate",
    "RoleUpdate",
    "SessionInfo",
    "TagChanges",
    "TenantCreate",
    "TenantUpdate",
    "UserCreate",
    "UserUpdate",
    "VmCreate",
    "VmUpdate",
]

Language = Literal["es", "en", "auto", "default"]


def _rule(rule: names.NameRule, *, optional: bool = False) -> Any:
    """A name field documented with its rule (qvd.config.names). The action refuses
    a name that breaks it with 6320 and the reason: the schema only bounds length, so
    that the refusal keeps QVD's status and message."""
    extra: dict[str, Any] = {"default": None} if optional else {}
    return Field(min_length=1, max_length=rule.max_len, description=rule.summary, **extra)


def _key_values() -> Any:
    return Field(
        default=None,
        description=f"{names.PROPERTY_KEY.summary}; {names.PROPERTY_VALUE.summary}",
    )


Text = Field(default=None, max_length=32768)
Id = Field(default=None, ge=-(2**31), lt=2**31)

# REST field -> action argument
NESTED = {
    "properties": "__properties__",
    "properties_changes": "__properties_changes__",
    "tags": "__tags__",
    "tags_changes": "__tags_changes__",
    "acls": "__acls__",
    "roles": "__roles__",
    "acls_changes": "__acls_changes__",
    "roles_changes": "__roles_changes__",
    "objects": "__property_assign__",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    status: int
    message: str
    failures: dict[str, Any] | None = None


class Page(BaseModel):
    total: int
    rows: list[dict[str, Any]]


class Created(BaseModel):
    id: int


class Login(_Body):
    login: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    tenant: str | None = Field(default=None, max_length=80)


class SessionInfo(BaseModel):
    sid: str
    expires: dt.datetime
    admin_id: int
    tenant_id: int


class PropertyChanges(_Body):
    set: dict[str, str] = Field(default_factory=dict)
    delete: list[str] = Field(default_factory=list)


class TagChanges(_Body):
    create: list[str] = Field(default_factory=list)
    delete: list[str] = Field(default_factory=list)


class Changes(_Body):
    assign_acls: list[str] = Field(default_factory=list)
    unassign_acls: list[str] = Field(default_factory=list)


class RoleChanges(_Body):
    assign_roles: list[int | str] = Field(default_factory=list)
    unassign_roles: list[int | str] = Field(default_factory=list)


class TenantCreate(_Body):
    name: str = _rule(names.TENANT_NAME)
    description: str | None = Text
    language: Language | None = None
    block: int | None = Field(default=None, ge=1, le=10000)
    blocked: bool | None = None


class TenantUpdate(_Body):
    name: str | None = _rule(names.TENANT_NAME, optional=True)
    description: str | None = Text
    language: Language | None = None
    block: int | None = Field(default=None, ge=1, le=10000)
    blocked: bool | None = None


class AdministratorCreate(_Body):
    name: str = _rule(names.ADMIN_NAME)
    password: str = Field(min_length=1, max_length=1024)
    tenant_id: int | None = Id
    description: str | None = Text
    language: Language | None = None
    block: int | None = Field(default=None, ge=1, le=10000)
    roles: list[int | str] | None = None


class AdministratorUpdate(_Body):
    name: str | None = _rule(names.ADMIN_NAME, optional=True)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    current_password: str | None = Field(  # needed to change one's own password
        default=None, min_length=1, max_length=1024
    )
    description: str | None = Text
    language: Language | None = None
    block: int | None = Field(default=None, ge=1, le=10000)
    roles_changes: RoleChanges | None = None


class RoleCreate(_Body):
    name: str = _rule(names.ROLE_NAME)
    tenant_id: int | None = Id
    description: str | None = Text
    acls: list[str] | None = None
    roles: list[int | str] | None = None


class RoleUpdate(_Body):
    name: str | None = _rule(names.ROLE_NAME, optional=True)
    description: str | None = Text
    acls_changes: Changes | None = None
    roles_changes: RoleChanges | None = None


class UserCreate(_Body):
    name: str = _rule(names.LOGIN)
    password: str = Field(min_length=1, max_length=1024)
    tenant_id: int | None = Id
    blocked: bool | None = None
    description: str | None = Text
    language: Language | None = None
    properties: dict[str, str] | None = _key_values()


class UserUpdate(_Body):
    name: str | None = _rule(names.LOGIN, optional=True)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    blocked: bool | None = None
    description: str | None = Text
    language: Language | None = None
    properties_changes: PropertyChanges | None = None


class OsfCreate(_Body):
    name: str = _rule(names.OSF_NAME)
    tenant_id: int | None = Id
    memory: int | None = Field(default=None, ge=1, lt=2**31)
    user_storage: int | None = Field(default=None, ge=0, lt=2**31)
    overlay: bool | None = None
    is_application: bool | None = None
    description: str | None = Text
    properties: dict[str, str] | None = _key_values()


class OsfUpdate(_Body):
    name: str | None = _rule(names.OSF_NAME, optional=True)
    memory: int | None = Field(default=None, ge=1, lt=2**31)
    user_storage: int | None = Field(default=None, ge=0, lt=2**31)
    overlay: bool | None = None
    is_application: bool | None = None
    description: str | None = Text
    properties_changes: PropertyChanges | None = None


class HostCreate(_Body):
    name: str = _rule(names.HOST_NAME)
    address: str = Field(min_length=1, max_length=127, description="One IPv4 or IPv6 address.")
    frontend: bool | None = None
    backend: bool | None = None
    blocked: bool | None = None
    description: str | None = Text
    properties: dict[str, str] | None = _key_values()


class HostUpdate(_Body):
    name: str | None = _rule(names.HOST_NAME, optional=True)
    address: str | None = Field(
        default=None, min_length=1, max_length=127, description="One IPv4 or IPv6 address."
    )
    frontend: bool | None = None
    backend: bool | None = None
    blocked: bool | None = None
    description: str | None = Text
    properties_changes: PropertyChanges | None = None


class VmCreate(_Body):
    name: str = _rule(names.VM_NAME)
    user_id: int | None = Id
    user: str | None = Field(default=None, max_length=64)
    osf_id: int | None = Id
    osf: str | None = Field(default=None, max_length=64)
    di_tag: str | None = _rule(names.DI_TAG, optional=True)
    ip: str | None = Field(default=None, max_length=45)
    description: str | None = Text
    properties: dict[str, str] | None = _key_values()


class VmUpdate(_Body):
    name: str | None = _rule(names.VM_NAME, optional=True)
    di_tag: str | None = _rule(names.DI_TAG, optional=True)
    blocked: bool | None = None
    expiration_soft: dt.datetime | None = None
    expiration_hard: dt.datetime | None = None
    description: str | None = Text
    properties_changes: PropertyChanges | None = None


class DiCreate(_Body):
    disk_image: str = _rule(names.DI_FILE_NAME)
    osf_id: int | None = Id
    osf: str | None = Field(default=None, max_length=64)
    version: str | None = Field(
        default=None, min_length=1, max_length=64, description=names.DI_TAG.summary
    )
    description: str | None = Text
    blocked: bool | None = None
    tags: list[str] | None = None
    expiration_time_soft: int | None = Field(default=None, ge=0, lt=2**31)
    expiration_time_hard: int | None = Field(default=None, ge=0, lt=2**31)
    properties: dict[str, str] | None = _key_values()


class DiUpdate(_Body):
    blocked: bool | None = None
    description: str | None = Text
    auto_publish: bool | None = None
    expiration_time_soft: int | None = Field(default=None, ge=0, lt=2**31)
    expiration_time_hard: int | None = Field(default=None, ge=0, lt=2**31)
    tags_changes: TagChanges | None = None
    properties_changes: PropertyChanges | None = None


class PropertyCreate(_Body):
    key: str = _rule(names.PROPERTY_KEY)
    tenant_id: int | None = Id
    description: str | None = Text
    objects: list[Literal["user", "vm", "host", "osf", "di"]] | None = None


class PropertyUpdate(_Body):
    key: str | None = _rule(names.PROPERTY_KEY, optional=True)
    description: str | None = Text
    objects: list[Literal["user", "vm", "host", "osf", "di"]] | None = None


class ConfigSet(_Body):
    value: str = Field(max_length=4096, description=names.CONFIG_VALUE.summary)
    tenant_id: int | None = Id
