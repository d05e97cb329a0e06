"""Lists: QVD's filter language compiled to SQL, with field selection, ACL checks,
ordering and paging (reference §5.2).

Filters are JSON: ``{field: value}`` (equality; ``null`` is IS NULL),
``{field: [v1, v2]}`` (IN), ``{field: {op: value, …}}`` with op in ``=``, ``!=``,
``<>``, ``<``, ``>``, ``<=``, ``>=``, ``~`` / ``LIKE`` (several ops in one object are
ANDed, which makes a range; a list value with ``=`` is IN, with ``!=`` NOT IN, with
``~`` any of the patterns), and ``-and`` / ``-or`` / ``-not`` holding an object or a
list of objects (or of flat ``"field", value`` pairs: ``{"-or": ["id", 1, "id", 2]}``).
Ids and numbers may come as strings (``"10207"``). Every filter, field and order field
must be visible to the caller (its ``see`` ACL), else 4220 / 4250 / 4260;
non-superadmins cannot use tenant fields.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, false, func, not_, or_, true
from sqlalchemy.orm import Session

from qvd.api.actions.principal import Principal
from qvd.api.errors import Forbidden, InvalidRequest, Status

__all__ = [
    "Expr",
    "Field",
    "ListQuery",
    "ListSpec",
    "coerce",
    "compile_filters",
    "run_list",
    "select_ids",
    "visible_fields",
]

Expr = Any  # a column, an ORM attribute or a SQL expression
_OPS = {"=", "!=", "<>", "<", ">", "<=", ">=", "~", "LIKE", "like"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """One listable field of an object."""

    expr: Expr
    kind: type = str
    see: str | None = None  # ACL needed to see, filter and order by it
    filterable: bool = True
    superadmin_only: bool = False
    default: bool = True  # part of the default field set


@dataclass(frozen=True, slots=True, kw_only=True)
class ListSpec:
    """How to list one kind of object."""

    object: str
    fields: Mapping[str, Field]
    base: Callable[[], Select[Any]]  # FROM and JOINs, columns replaced at run time
    id_expr: Expr
    scope: Callable[[Principal], ColumnElement[bool] | None]


@dataclass(slots=True, kw_only=True)
class ListQuery:
    filters: Any = None
    fields: Sequence[str] = ()
    order_by: Sequence[tuple[str, bool]] = ()  # (field, descending)
    limit: int | None = None
    offset: int = 0
    count: bool = True
    extra: list[ColumnElement[bool]] = field(default_factory=list)


def coerce(kind: type, value: Any, what: str, code: int = Status.BAD_FILTER_VALUE) -> Any:
    """``value`` as a Python value of ``kind`` (strings from the CLI are converted)."""
    if value is None:
        return None
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in {"1", "0", "true", "false"}:
                return value.strip().lower() in {"1", "true"}
            raise ValueError(value)
        if kind is int:
            if isinstance(value, (bool, float)):
                raise ValueError(value)
            result = int(value)
            if not -(2**31) <= result < 2**31:
                raise ValueError(value)
            return result
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind is dt.datetime:
            if not isinstance(value, str):
                raise ValueError(value)
            parsed = dt.datetime.fromisoformat(value.replace(" ", "T"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        if kind is str:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ValueError(value)
            text = str(value)
            if "\x00" in text:
                raise ValueError(value)
            return text
    except (ValueError, TypeError, OverflowError):
        pass
    else:
        raise InvalidRequest(f"{what}: values of type {kind.__name__} cannot be used here", code)
    raise InvalidRequest(f"{what}: {value!r} is not a valid {kind.__name__}", code)


def _field(spec: ListSpec, name: str, principal: Principal, code: int, verb: str) -> Field:
    f = spec.fields.get(name) if isinstance(name, str) else None
    if f is None:
        bad = {
            Status.FORBIDDEN_FILTER: Status.BAD_FILTER,
            Status.FORBIDDEN_FIELD: Status.BAD_FIELD,
            Status.FORBIDDEN_ORDER: Status.BAD_ORDER_FIELD,
        }[code]
        known = ", ".join(sorted(spec.fields))
        raise InvalidRequest(f"{spec.object} has no field {name!r} to {verb} (known: {known})", bad)
    if f.superadmin_only and not principal.superadmin:
        raise Forbidden(f"only superadmins may {verb} the {spec.object} field {name!r}", code)
    if f.see is not None and not principal.can(f.see):
        raise Forbidden(f"to {verb} the {spec.object} field {name!r} needs the ACL {f.see!r}", code)
    return f


def _compare(f: Field, name: str, op: str, value: Any) -> ColumnElement[bool]:
    expr: ColumnElement[Any] = f.expr
    if op not in _OPS:
        raise InvalidRequest(f"filter on {name!r}: unknown operator {op!r}", Status.BAD_FILTER)
    if isinstance(value, list):
        if op in ("~", "LIKE", "like"):
            return or_(false(), *(_compare(f, name, op, v) for v in value))
        values = [coerce(f.kind, v, f"filter on {name!r}") for v in value]
        if op == "=":
            return expr.in_(values)
        if op in ("!=", "<>"):
            return expr.not_in(values)
        raise InvalidRequest(f"filter on {name!r}: {op!r} takes one value, not a list")
    if op in ("~", "LIKE", "like"):
        if f.kind is not str or not isinstance(value, str):
            raise InvalidRequest(
                f"filter on {name!r}: LIKE needs a text field and a text pattern",
                Status.BAD_FILTER_VALUE,
            )
        return expr.like(value)
    v = coerce(f.kind, value, f"filter on {name!r}")
    if v is None:
        if op == "=":
            return expr.is_(None)
        if op in ("!=", "<>"):
            return expr.is_not(None)
        raise InvalidRequest(f"filter on {name!r}: {op!r} cannot compare with null")
    if f.kind is dict:
        raise InvalidRequest(
            f"filter on {name!r}: this field cannot be filtered", Status.BAD_FILTER
        )
    ops: dict[str, Callable[[], ColumnElement[bool]]] = {
        "=": lambda: expr == v,
        "!=": lambda: expr != v,
        "<>": lambda: expr != v,
        "<": lambda: expr < v,
        ">": lambda: expr > v,
        "<=": lambda: expr <= v,
        ">=": lambda: expr >= v,
    }
    return ops[op]()


def compile_filters(filters: Any, spec: ListSpec, principal: Principal) -> ColumnElement[bool]:
    """The WHERE clause of a QVD filter object (checked against the caller's ACLs)."""
    if filters is None or filters == {} or filters == []:
        return true()
    if isinstance(filters, list):
        return and_(true(), *(compile_filters(f, spec, principal) for f in filters))
    if not isinstance(filters, dict):
        raise InvalidRequest("filters must be a JSON object", Status.BAD_FILTER)
    parts: list[ColumnElement[bool]] = []
    for key, value in filters.items():
        if key in ("-and", "-or", "-not"):
            items = _flat_pairs(value) if isinstance(value, list) else [value]
            if isinstance(value, dict) and key == "-or":
                items = [{k: v} for k, v in value.items()]
            subs = [compile_filters(i, spec, principal) for i in items]
            if key == "-and":
                parts.append(and_(true(), *subs))
            elif key == "-or":
                parts.append(or_(false(), *subs))
            else:
                parts.append(not_(and_(true(), *subs)))
            continue
        f = _field(spec, key, principal, Status.FORBIDDEN_FILTER, "filter by")
        if not f.filterable:
            raise InvalidRequest(f"{spec.object} field {key!r} cannot be filtered", 6210)
        if isinstance(value, dict):
            if not value:
                raise InvalidRequest(f"filter on {key!r} has no operator", Status.BAD_FILTER)
            parts.extend(_compare(f, key, str(op), v) for op, v in value.items())
        else:  # a value or a list of them
            parts.append(_compare(f, key, "=", value))
    return and_(true(), *parts)


def _flat_pairs(items: list[Any]) -> list[Any]:
    """A ``-and`` / ``-or`` list with its flat ``"field", value`` pairs made into
    ``{field: value}`` objects: ``["id", 1, "id", 2]`` is ``[{"id": 1}, {"id": 2}]``
    (the form the WAT sends; objects and lists in it stay sub-filters)."""
    out: list[Any] = []
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, str):
            if i + 1 >= len(items):
                raise InvalidRequest(
                    f"filter: the field {item!r} has no value after it", Status.BAD_FILTER
                )
            out.append({item: items[i + 1]})
            i += 2
        else:
            out.append(item)
            i += 1
    return out


def _where(spec: ListSpec, principal: Principal, query: ListQuery) -> ColumnElement[bool]:
    clause = compile_filters(query.filters, spec, principal)
    scope = spec.scope(principal)
    extra = [*query.extra, *([scope] if scope is not None else [])]
    return and_(clause, *extra)


def select_ids(session: Session, spec: ListSpec, principal: Principal, filters: Any) -> list[int]:
    """Ids of the objects a filter selects within the caller's scope."""
    where = _where(spec, principal, ListQuery(filters=filters))
    stmt = spec.base().with_only_columns(spec.id_expr).where(where).order_by(spec.id_expr)
    return [int(r[0]) for r in session.execute(stmt)]


def visible_fields(spec: ListSpec, principal: Principal) -> list[str]:
    return [
        name
        for name, f in spec.fields.items()
        if f.default
        and (f.see is None or principal.can(f.see))
        and (not f.superadmin_only or principal.superadmin)
    ]


_by_id_cache: dict[tuple[int, tuple[str, ...], bool, int], tuple[ListSpec, Any]] = {}
_by_id_lock = threading.Lock()


def _by_id_statement(spec: ListSpec, principal: Principal, chosen: dict[str, Field]) -> Any:
    """The statement that fetches one object by id, built once per object kind, field
    set and tenant scope (SQLAlchemy then reuses its compiled form)."""
    key = (id(spec), tuple(chosen), principal.superadmin, principal.tenant_id)
    with _by_id_lock:
        hit = _by_id_cache.get(key)
    # the cache holds the spec itself, so its id cannot be reused by another spec
    stmt = hit[1] if hit is not None and hit[0] is spec else None
    if stmt is None:
        scope = spec.scope(principal)
        stmt = (
            spec.base()
            .with_only_columns(*(f.expr.label(n) for n, f in chosen.items()))
            .where(spec.id_expr == bindparam("object_id"), *([scope] if scope is not None else []))
            .limit(1)
        )
        with _by_id_lock:
            if len(_by_id_cache) > 1024:
                _by_id_cache.clear()
            _by_id_cache[key] = (spec, stmt)
    return stmt


def _single_id(spec: ListSpec, principal: Principal, query: ListQuery) -> int | None:
    """The id of a plain ``{"id": N}`` query that needs no count, order or paging."""
    f = query.filters
    if query.count or query.order_by or query.offset or query.extra or not isinstance(f, dict):
        return None
    value = f.get("id") if len(f) == 1 else None
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
        return None
    _field(spec, "id", principal, Status.FORBIDDEN_FILTER, "filter by")
    return value


def run_list(
    session: Session, spec: ListSpec, principal: Principal, query: ListQuery
) -> tuple[int, list[dict[str, Any]]]:
    """``(total, rows)`` of one page."""
    names = list(query.fields) or visible_fields(spec, principal)
    chosen = {n: _field(spec, n, principal, Status.FORBIDDEN_FIELD, "see") for n in names}
    object_id = _single_id(spec, principal, query) if "id" in spec.fields else None
    if object_id is not None:
        stmt = _by_id_statement(spec, principal, chosen)
        found = [
            _jsonable(dict(r._mapping)) for r in session.execute(stmt, {"object_id": object_id})
        ]
        return len(found), found
    order = []
    for name, desc in query.order_by:
        f = _field(spec, name, principal, Status.FORBIDDEN_ORDER, "order by")
        order.append(f.expr.desc().nulls_last() if desc else f.expr.asc().nulls_last())
    order.append(spec.id_expr.asc())
    where = _where(spec, principal, query)
    total = session.scalar(spec.base().with_only_columns(func.count()).where(where).order_by(None))
    stmt = (
        spec.base()
        .with_only_columns(*(f.expr.label(n) for n, f in chosen.items()))
        .where(where)
        .order_by(*order)
        .offset(query.offset)
    )
    if query.limit is not None:
        stmt = stmt.limit(query.limit)
    rows = [_jsonable(dict(r._mapping)) for r in session.execute(stmt)]
    return (len(rows) if total is None else int(total)), rows


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    for k, v in row.items():
        if isinstance(v, dt.datetime):
            row[k] = v.isoformat()
    return row
