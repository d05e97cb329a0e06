"""The service layer's shared parts: the request and result of an action, the context
an action runs in, argument checking, multi-object execution and database error
translation. Both faces (``POST /api`` and ``/api/v1``) build an :class:`ActionRequest`
and call :func:`qvd.api.actions.dispatch.run_action`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from qvd.api.actions.listing import ListSpec, coerce, select_ids
from qvd.api.actions.principal import Principal
from qvd.api.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Status,
)
from qvd.config import Config
from qvd.config.names import NameRule, NameRuleError

__all__ = [
    "Action",
    "ActionRequest",
    "ActionResult",
    "Args",
    "Ctx",
    "Handler",
    "checked_name",
    "db_error",
    "for_each",
    "savepoint",
    "selected_ids",
]


@dataclass(slots=True, kw_only=True)
class ActionRequest:
    """One action call, whichever face it came through."""

    action: str
    filters: Any = None
    arguments: dict[str, Any] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    order_by: list[tuple[str, bool]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    count: bool = True  # lists: also count every match (``total``)


@dataclass(slots=True, kw_only=True)
class ActionResult:
    """What an action did: rows to show, and for multi-object actions which objects it
    touched and which failed (the dispatcher commits the good ones, then reports)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    affected: list[tuple[int | None, str | None]] = field(default_factory=list)
    failures: dict[int, ApiError] = field(default_factory=dict)
    selected: int = 0


@dataclass(slots=True, kw_only=True)
class Ctx:
    """What an action runs with: one open transaction and the caller."""

    session: Session
    principal: Principal
    config: Config
    engine: Engine


Handler = Callable[[Ctx, ActionRequest], ActionResult]


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """An entry of the action catalogue (reference §5.3)."""

    name: str
    qvd_object: str | None
    type_of_action: str  # see (read only), create, update, delete, exec
    acls: tuple[str, ...]
    handler: Handler
    multitenant_only: bool = False

    @property
    def mutating(self) -> bool:
        return self.type_of_action != "see"


_CONSTRAINT = re.compile(r'constraint "([^"]+)"')


def db_error(exc: DBAPIError, what: str) -> ApiError:
    """A database refusal as an API error that says what was refused."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or ""
    text = str(orig).splitlines()[0] if orig is not None else str(exc)
    detail = ""
    diag = getattr(orig, "diag", None)
    if diag is not None and getattr(diag, "message_detail", None):
        detail = f" ({diag.message_detail})"
    match = _CONSTRAINT.search(text)
    constraint = match.group(1) if match else "?"
    if sqlstate == "23505":
        return Conflict(f"{what}: already exists{detail} [{constraint}]", Status.ALREADY_EXISTS)
    if sqlstate == "23503":
        if "still referenced" in text + detail:
            return Conflict(f"{what}: other objects depend on it{detail}", Status.HAS_DEPENDENTS)
        return NotFound(f"{what}: a referenced object does not exist{detail}", 7110)
    if sqlstate == "23502":
        return InvalidRequest(f"{what}: a required value is missing: {text}", 6410)
    if sqlstate == "23514":
        if "cycle" in text:
            return Conflict(f"{what}: {text}", Status.ROLE_CYCLE)
        return InvalidRequest(f"{what}: a value is out of range: {text}", 6320)
    if sqlstate.startswith("22"):
        return InvalidRequest(f"{what}: invalid value: {text}", 6320)
    return ApiError(f"{what}: database error: {text}", Status.INTERNAL)


@contextmanager
def savepoint(session: Session, what: str) -> Iterator[None]:
    """Run a block in a savepoint; a database refusal becomes an :class:`ApiError`."""
    nested = session.begin_nested()
    try:
        yield
        session.flush()
    except ApiError:
        nested.rollback()
        raise
    except DBAPIError as exc:
        nested.rollback()
        raise db_error(exc, what) from None
    else:
        nested.commit()


def for_each(
    ctx: Ctx,
    spec: ListSpec,
    filters: Any,
    work: Callable[[int], str | None],
) -> ActionResult:
    """Run ``work(id)`` for every object the filters select in the caller's scope, each
    in its own savepoint; collect per-object failures (reference: status 1200)."""
    ids = selected_ids(ctx, spec, filters)
    result = ActionResult(selected=len(ids))
    for object_id in ids:
        try:
            with savepoint(ctx.session, f"{spec.object} {object_id}"):
                name = work(object_id)
            result.affected.append((object_id, name))
        except ApiError as exc:
            result.failures[object_id] = exc
    return result


def selected_ids(ctx: Ctx, spec: ListSpec, filters: Any) -> list[int]:
    """Ids of the objects the filters select in the caller's scope: 6220 without
    filters, 1300 when they select nothing."""
    if filters in (None, {}, []):
        raise InvalidRequest(
            f"this action needs filters that select the {spec.object}s to act on",
            Status.MISSING_FILTER,
        )
    ids = select_ids(ctx.session, spec, ctx.principal, filters)
    if not ids:
        raise NotFound(f"no {spec.object} matches the filters", Status.ZERO_SELECTED)
    return ids


def checked_name(
    qvd_object: str, argument: str, value: Any, rule: NameRule, code: int = 6320
) -> str:
    """``value`` when it follows ``rule``; else the refusal (6320 unless ``code`` says
    otherwise) naming the object, the argument, the reason and the rule."""
    try:
        return rule.check(value)
    except NameRuleError as exc:
        raise InvalidRequest(f"{qvd_object}: {argument!r}: {exc}", code) from None


class Args:
    """The arguments of a create or update, taken one by one with their ACL checks;
    :meth:`finish` refuses whatever was not taken."""

    def __init__(self, raw: Any, qvd_object: str, principal: Principal) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise InvalidRequest("arguments must be a JSON object", Status.BAD_ARGUMENT)
        self._raw: dict[str, Any] = dict(raw)
        self._object = qvd_object
        self._principal = principal

    def has(self, name: str) -> bool:
        return name in self._raw

    def peek(self, name: str) -> Any:
        """The raw value of ``name`` (None when absent), not taken."""
        return self._raw.get(name)

    def take(
        self,
        name: str,
        kind: type,
        *,
        acl: str | tuple[str, ...] | None = None,
        required: bool = False,
        superadmin: bool = False,
        nullable: bool = False,
    ) -> Any:
        """The value of ``name`` as ``kind`` (None when absent)."""
        if name not in self._raw:
            if required:
                raise InvalidRequest(
                    f"{self._object}: the argument {name!r} is required", Status.MISSING_ARGUMENT
                )
            return None
        value = self._raw.pop(name)
        if superadmin and not self._principal.superadmin:
            raise Forbidden(
                f"{self._object}: only superadmins may give {name!r}", Status.FORBIDDEN_ARGUMENT
            )
        if acl is not None:
            patterns = (acl,) if isinstance(acl, str) else acl
            if not self._principal.can_any(*patterns):
                raise Forbidden(
                    f"{self._object}: the argument {name!r} needs the ACL "
                    f"{' or '.join(repr(p) for p in patterns)}",
                    Status.FORBIDDEN_ARGUMENT,
                )
        if value is None:
            if nullable:
                return None
            raise InvalidRequest(f"{self._object}: {name!r} cannot be null", 6410)
        if kind is dict or kind is list:
            if not isinstance(value, kind):
                raise InvalidRequest(
                    f"{self._object}: {name!r} must be a JSON {kind.__name__}",
                    Status.BAD_ARGUMENT_VALUE,
                )
            return value
        return coerce(kind, value, f"{self._object} argument {name!r}", Status.BAD_ARGUMENT_VALUE)

    def text(self, name: str, *, max_len: int, **kwargs: Any) -> str | None:
        """A text argument with a length limit (and no surrounding blanks)."""
        value: str | None = self.take(name, str, **kwargs)
        if value is None:
            return None
        value = value.strip()
        if len(value) > max_len:
            raise InvalidRequest(
                f"{self._object}: {name!r} is longer than {max_len} characters",
                Status.BAD_ARGUMENT_VALUE,
            )
        return value

    def name(
        self, name: str = "name", *, rule: NameRule | None = None, max_len: int = 64, **kwargs: Any
    ) -> str | None:
        """A name argument, checked against its ``rule`` (qvd.config.names) when given
        (the rule then bounds the length too, and its message says so)."""
        limit = max_len if rule is None else 1 << 20
        value = self.text(name, max_len=limit, **kwargs)
        if value is not None and not value:
            raise InvalidRequest(f"{self._object}: {name!r} cannot be empty", 6320)
        if value is not None and rule is not None:
            checked_name(self._object, name, value, rule)
        return value

    def finish(self) -> None:
        if self._raw:
            unknown = ", ".join(sorted(repr(k) for k in self._raw))
            raise InvalidRequest(
                f"{self._object}: unknown or unchangeable arguments {unknown}",
                Status.BAD_ARGUMENT,
            )

    @property
    def empty(self) -> bool:
        return not self._raw
