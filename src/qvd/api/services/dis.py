"""DIs (disk images) and their tags (reference §7).

Tag rules:
- a new DI gets its version as a *fixed* tag at once, and ``head`` plus whatever
  ``__tags__`` were asked for (``default`` only when asked, with ``di.create.default``)
  as *pending* tags (``dis.pending_tags``);
- publishing (state ``ready`` → ``published``) moves every pending tag onto the DI,
  taking it from whichever DI of the OSF held it; a tag that is fixed on another DI
  cannot move (7330); running VMs whose tag is now on this DI get their soft/hard
  expiration (now + the DI's ``expiration_time_soft/hard``);
- on a published DI, adding a tag moves it at once (roll forward or back); on an
  unpublished one it waits for publishing;
- ``head``, ``default`` and fixed tags cannot be deleted (7340), only moved;
- one tag per OSF is a database constraint; a move is one atomic
  ``INSERT … ON CONFLICT (osf_id, tag) DO UPDATE … WHERE NOT fixed``, so concurrent
  moves serialise on the row and never leave a tag on two DIs.

``dis_in_staging`` lists the files of ``path.storage.staging`` that the administrator's
staging import would take (plain regular files with an image suffix, per tenant: see
``qvd.api.uploads.staging``), as rows ``{"name": …}`` sorted by name; 2230 when the
directory does not exist.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, exists, func, literal, literal_column, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert

from qvd.api.actions.core import (
    Action,
    ActionRequest,
    ActionResult,
    Args,
    Ctx,
    checked_name,
    for_each,
)
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.errors import Conflict, Forbidden, InvalidRequest, NotFound, Status
from qvd.api.services.common import (
    apply_properties,
    created_fields,
    crud_actions,
    in_scope,
    list_action,
    properties_field,
    property_args,
    qvd_list_actions,
    tenant_fields,
    tiny_action,
)
from qvd.api.uploads.staging import list_staged
from qvd.config.names import DI_FILE_NAME, DI_TAG
from qvd.db.models import Di, DiRuntime, DiTag, Osf, Vm, VmRuntime

__all__ = ["ACTIONS", "SPEC", "TAG_SPEC", "mark_ready_and_publish", "publish"]

PROTECTED_TAGS = ("head", "default")


def _tags(fixed: bool | None = None) -> Any:
    stmt = select(
        func.coalesce(func.array_agg(DiTag.tag), literal_column("'{}'::varchar[]"))
    ).where(DiTag.di_id == Di.id)
    if fixed is not None:
        stmt = stmt.where(DiTag.fixed.is_(fixed))
    return stmt.correlate(Di).scalar_subquery()


_tag_objects = (
    select(
        func.coalesce(
            func.jsonb_agg(
                aggregate_order_by(
                    func.jsonb_build_object("id", DiTag.id, "tag", DiTag.tag, "fixed", DiTag.fixed),
                    DiTag.id,
                )
            ),
            literal_column("'[]'::jsonb"),
        )
    )
    .where(DiTag.di_id == Di.id)
    .correlate(Di)
    .scalar_subquery()
)
"""The DI's tags as ``[{id, tag, fixed}]`` (QVD's DI details)."""


def _has_tag(tag: str) -> Any:
    return exists().where(DiTag.di_id == Di.id, DiTag.tag == tag).correlate(Di)


_FIELDS: dict[str, Field] = {
    "id": Field(expr=Di.id, kind=int, see="di.see.id"),
    "disk_image": Field(expr=Di.path),
    "description": Field(expr=Di.description, see="di.see.description"),
    "version": Field(expr=Di.version, see="di.see.version"),
    "osf_id": Field(expr=Di.osf_id, kind=int, see="di.see.osf"),
    "osf_name": Field(expr=Osf.name, see="di.see.osf"),
    "blocked": Field(expr=Di.blocked, kind=bool, see="di.see.block"),
    "tags": Field(expr=_tags(), kind=list, see="di.see.tags", filterable=False),
    "pending_tags": Field(expr=Di.pending_tags, kind=list, see="di.see.tags", filterable=False),
    "head": Field(expr=_has_tag("head"), kind=bool, see="di.see.head"),
    "default": Field(expr=_has_tag("default"), kind=bool, see="di.see.default"),
    "state": Field(expr=DiRuntime.state),
    "state_ts": Field(expr=DiRuntime.state_ts, kind=dt.datetime),
    "percentage": Field(expr=DiRuntime.percentage, kind=float),
    "elapsed_time": Field(expr=DiRuntime.elapsed_time, kind=int),
    "tag_objects": Field(
        expr=_tag_objects, kind=list, see="di.see.tags", filterable=False, default=False
    ),
    "status_message": Field(expr=DiRuntime.status_message),
    "error_code": Field(expr=DiRuntime.error_code, kind=int, default=False),
    "auto_publish": Field(expr=DiRuntime.auto_publish, kind=bool),
    "expiration_time_soft": Field(expr=DiRuntime.expiration_time_soft, kind=int),
    "expiration_time_hard": Field(expr=DiRuntime.expiration_time_hard, kind=int),
    "properties": properties_field("di", Di.id),
    **created_fields("di", Di),
    **tenant_fields(Osf.tenant_id),
}


@cache
def _base() -> Any:
    """FROM and JOINs of the list (built once; statements are immutable)."""
    return (
        select(literal(1))
        .select_from(Di)
        .join(Osf, Osf.id == Di.osf_id)
        .join(DiRuntime, DiRuntime.di_id == Di.id)
    )


SPEC = ListSpec(
    object="di", fields=_FIELDS, base=_base, id_expr=Di.id, scope=in_scope(Osf.tenant_id)
)

TAG_SPEC = ListSpec(
    object="tag",
    fields={
        "id": Field(expr=DiTag.id, kind=int),
        "name": Field(expr=DiTag.tag),
        "tag": Field(expr=DiTag.tag),
        "di_id": Field(expr=DiTag.di_id, kind=int),
        "osf_id": Field(expr=DiTag.osf_id, kind=int),
        "fixed": Field(expr=DiTag.fixed, kind=bool),
    },
    base=lambda: select(literal(1)).select_from(DiTag).join(Osf, Osf.id == DiTag.osf_id),
    id_expr=DiTag.id,
    scope=in_scope(Osf.tenant_id),
)


def _check_tag(tag: Any) -> str:
    return checked_name("di", "tag", tag, DI_TAG, Status.BAD_TAG)


def _fixed_elsewhere(ctx: Ctx, di: Di, tag: str) -> None:
    holder = ctx.session.scalar(
        select(DiTag.di_id).where(
            DiTag.osf_id == di.osf_id, DiTag.tag == tag, DiTag.fixed.is_(True), DiTag.di_id != di.id
        )
    )
    if holder is not None:
        raise Conflict(f"tag {tag!r} is fixed on DI {holder} and cannot move", Status.TAG_FIXED)


def move_tag(ctx: Ctx, di: Di, tag: str) -> None:
    """Put ``tag`` on ``di``, taking it from any DI of the same OSF (atomically)."""
    stmt = insert(DiTag).values(di_id=di.id, osf_id=di.osf_id, tag=tag, fixed=False)
    moved = ctx.session.scalar(
        stmt.on_conflict_do_update(
            index_elements=["osf_id", "tag"],
            set_={"di_id": stmt.excluded.di_id},
            where=DiTag.fixed.is_(False) | (DiTag.di_id == di.id),
        ).returning(DiTag.id)
    )
    if moved is None:
        _fixed_elsewhere(ctx, di, tag)
        raise Conflict(f"tag {tag!r} is fixed on another DI", Status.TAG_FIXED)


def _next_version(ctx: Ctx, osf_id: int) -> str:
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    used = set(ctx.session.scalars(select(DiTag.tag).where(DiTag.osf_id == osf_id)))
    used |= set(ctx.session.scalars(select(Di.version).where(Di.osf_id == osf_id)))
    for n in range(1000):
        candidate = f"{today}-{n:03d}"
        if candidate not in used:
            return candidate
    raise Conflict(f"OSF {osf_id} has 1000 DIs versioned today; give a version", 7200)


def create_di(ctx: Ctx, arguments: dict[str, Any]) -> Di:
    args = Args(arguments, "di", ctx.principal)
    disk_image = args.name("disk_image", rule=DI_FILE_NAME, required=True) or ""
    osf_id = args.take("osf_id", int)
    osf_name = args.take("osf", str)
    stmt = select(Osf)
    if osf_id is not None:
        stmt = stmt.where(Osf.id == osf_id)
    elif osf_name is not None:
        stmt = stmt.where(Osf.name == osf_name)
    else:
        raise InvalidRequest("di: give osf_id (or osf by name)", Status.MISSING_ARGUMENT)
    if not ctx.principal.superadmin:
        stmt = stmt.where(Osf.tenant_id == ctx.principal.tenant_id)
    osfs = list(ctx.session.scalars(stmt.limit(2)))
    if len(osfs) != 1:
        what = osf_id if osf_id is not None else repr(osf_name)
        raise NotFound(f"di: there is no single OSF {what}", Status.MISSING_REFERENCE_ARG)
    osf = osfs[0]
    version = args.text("version", max_len=64, acl="di.create.version")
    if version is not None:
        checked_name("di", "version", version, DI_TAG, Status.BAD_TAG)
    version = version or _next_version(ctx, osf.id)
    tags = [_check_tag(t) for t in args.take("__tags__", list, acl="di.create.tags") or []]
    if "default" in tags and not ctx.principal.can("di.create.default"):
        raise Forbidden("di: the tag 'default' needs the ACL 'di.create.default'", 4230)
    di = Di(
        osf_id=osf.id,
        path=disk_image,
        version=version,
        description=args.text("description", max_len=32768, nullable=True),
        blocked=args.take("blocked", bool) or False,
        pending_tags=list(dict.fromkeys(["head", *[t for t in tags if t != version]])),
        creation_admin_id=ctx.principal.admin_id,
    )
    runtime: dict[str, Any] = {}
    for key in ("expiration_time_soft", "expiration_time_hard"):
        if args.has(key):
            runtime[key] = args.take(key, int, nullable=True)
    if args.has("auto_publish"):
        runtime["auto_publish"] = args.take("auto_publish", bool)
    props, _ = property_args(args, "di", create=True)
    args.finish()
    ctx.session.add(di)
    ctx.session.flush()
    for tag in di.pending_tags:
        _fixed_elsewhere(ctx, di, tag)
    taken = ctx.session.scalar(
        select(DiTag.di_id).where(DiTag.osf_id == osf.id, DiTag.tag == version)
    )
    if taken is not None:
        raise Conflict(f"di: version {version!r} is already a tag of DI {taken}", 7200)
    ctx.session.add(DiTag(di_id=di.id, osf_id=osf.id, tag=version, fixed=True))
    if runtime:
        ctx.session.execute(update(DiRuntime).where(DiRuntime.di_id == di.id).values(**runtime))
    apply_properties(ctx.session, "di", di.id, osf.tenant_id, props, [])
    ctx.session.flush()
    return di


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    di = create_di(ctx, req.arguments)
    return ActionResult(rows=[{"id": di.id}], affected=[(di.id, di.path)])


def publish(ctx: Ctx, di_id: int) -> None:
    """ready → published: move the pending tags here, then expire VMs on the old DI."""
    di = ctx.session.get_one(Di, di_id, with_for_update=True)
    rt = ctx.session.get_one(DiRuntime, di_id, with_for_update=True)
    if rt.state != "ready":
        raise Conflict(f"DI {di_id} is {rt.state}; only a ready DI can be published", 7120)
    for tag in di.pending_tags:
        move_tag(ctx, di, tag)
    di.pending_tags = []
    rt.state = "published"
    rt.state_ts = dt.datetime.now(dt.UTC)
    ctx.session.flush()
    _expire_running_vms(ctx, di, rt)


def _expire_running_vms(ctx: Ctx, di: Di, rt: DiRuntime) -> None:
    now = dt.datetime.now(dt.UTC)
    values: dict[str, Any] = {}
    if rt.expiration_time_soft is not None:
        values["vm_expiration_soft"] = now + dt.timedelta(seconds=rt.expiration_time_soft)
    if rt.expiration_time_hard is not None:
        values["vm_expiration_hard"] = now + dt.timedelta(seconds=rt.expiration_time_hard)
    if not values:
        return
    tags = select(DiTag.tag).where(DiTag.di_id == di.id)
    vms = select(Vm.id).where(Vm.osf_id == di.osf_id, Vm.di_tag.in_(tags))
    ctx.session.execute(
        update(VmRuntime)
        .where(
            VmRuntime.vm_id.in_(vms),
            VmRuntime.vm_state != "stopped",
            VmRuntime.current_di_id.is_distinct_from(di.id),
        )
        .values(**values)
    )


def mark_ready_and_publish(ctx: Ctx, di_id: int, path: str) -> None:
    """The image file is in place: record it, then publish."""
    ctx.session.execute(update(Di).where(Di.id == di_id).values(path=path))
    ctx.session.execute(
        update(DiRuntime)
        .where(DiRuntime.di_id == di_id)
        .values(state="ready", percentage=100.0, state_ts=func.now())
    )
    publish(ctx, di_id)


def _tag_changes(ctx: Ctx, di: Di, changes: dict[str, Any]) -> None:
    add = [_check_tag(t) for t in changes.pop("create", None) or []]
    remove = [_check_tag(t) for t in changes.pop("delete", None) or []]
    if changes:
        raise InvalidRequest("__tags_changes__ takes 'create' and 'delete' lists", 6230)
    if "default" in add + remove and not ctx.principal.can("di.update.default"):
        raise Forbidden("di: moving the tag 'default' needs the ACL 'di.update.default'", 4230)
    published = ctx.session.scalar(select(DiRuntime.state).where(DiRuntime.di_id == di.id))
    for tag in add:
        if published == "published":
            move_tag(ctx, di, tag)
        else:
            _fixed_elsewhere(ctx, di, tag)
            if tag not in di.pending_tags:
                di.pending_tags = [*di.pending_tags, tag]
    for tag in remove:
        fixed = ctx.session.scalar(
            select(DiTag.fixed).where(DiTag.di_id == di.id, DiTag.tag == tag)
        )
        if tag in PROTECTED_TAGS or fixed:
            raise Conflict(
                f"tag {tag!r} cannot be deleted ({'fixed' if fixed else 'head and default'} tags "
                "only move to another DI)",
                Status.TAG_PROTECTED,
            )
        ctx.session.execute(delete(DiTag).where(DiTag.di_id == di.id, DiTag.tag == tag))
        di.pending_tags = [t for t in di.pending_tags if t != tag]


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(di_id: int) -> str | None:
        args = Args(req.arguments, "di", ctx.principal)
        di = ctx.session.get_one(Di, di_id, with_for_update=True)
        rt = ctx.session.get_one(DiRuntime, di_id)
        tenant = ctx.session.scalar(select(Osf.tenant_id).where(Osf.id == di.osf_id))
        if (blocked := args.take("blocked", bool, acl="di.update.block")) is not None:
            di.blocked = blocked
        if args.has("description"):
            di.description = args.text(
                "description", max_len=32768, acl="di.update.description", nullable=True
            )
        if (auto := args.take("auto_publish", bool, acl="di.update.auto-publish")) is not None:
            rt.auto_publish = auto
        for key in ("expiration_time_soft", "expiration_time_hard"):
            if args.has(key):
                value = args.take(key, int, acl="di.update.vms-expiration", nullable=True)
                setattr(rt, key, value)
        changes = args.take("__tags_changes__", dict, acl="di.update.tags")
        props, deleted = property_args(args, "di", create=False)
        args.finish()
        if changes:
            _tag_changes(ctx, di, dict(changes))
        apply_properties(ctx.session, "di", di_id, tenant, props, deleted)
        return di.path

    return for_each(ctx, SPEC, req.filters, work)


def _publish(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(di_id: int) -> str | None:
        publish(ctx, di_id)
        return None

    return for_each(ctx, SPEC, req.filters, work)


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(di_id: int) -> str | None:
        di = ctx.session.get_one(Di, di_id, with_for_update=True)
        in_use = ctx.session.scalar(
            select(func.count())
            .select_from(VmRuntime)
            .where(VmRuntime.current_di_id == di_id, VmRuntime.vm_state != "stopped")
        )
        if in_use:
            raise Conflict(f"DI {di_id} is used by {in_use} running VM(s)", Status.DI_IN_USE)
        my_tags = list(ctx.session.scalars(select(DiTag.tag).where(DiTag.di_id == di_id)))
        published = ctx.session.scalar(select(DiRuntime.state).where(DiRuntime.di_id == di_id))
        reached = ctx.session.scalar(
            select(func.count())
            .select_from(Vm)
            .where(Vm.osf_id == di.osf_id, Vm.di_tag.in_(my_tags))
        )
        if reached and published == "published":
            raise Conflict(
                f"DI {di_id} is what {reached} VM(s) boot through its tags; move the tags first",
                Status.HAS_DEPENDENTS,
            )
        ctx.session.execute(delete(DiTag).where(DiTag.di_id == di_id))
        successor = ctx.session.scalar(
            select(Di)
            .join(DiRuntime, DiRuntime.di_id == Di.id)
            .where(and_(Di.osf_id == di.osf_id, Di.id != di_id, DiRuntime.state == "published"))
            .order_by(Di.id.desc())
            .limit(1)
        )
        if successor is not None:
            for tag in PROTECTED_TAGS:
                if tag in my_tags:
                    move_tag(ctx, successor, tag)
        path = di.path
        ctx.session.delete(di)
        ctx.session.flush()
        _unlink_image(ctx, di_id, path)
        return path

    return for_each(ctx, SPEC, req.filters, work)


def _unlink_image(ctx: Ctx, di_id: int, path: str) -> None:
    if not path.startswith(f"{di_id}-"):
        return  # never imported: no file of ours
    image = ctx.config.get_path("path.storage.images") / Path(path).name
    with contextlib.suppress(FileNotFoundError):
        os.unlink(image)


def _in_staging(ctx: Ctx, req: ActionRequest) -> ActionResult:
    if req.filters not in (None, {}, []) or req.arguments:
        raise InvalidRequest("dis_in_staging takes no filters or arguments", Status.BAD_FILTER)
    staged = list_staged(ctx.config.get_path("path.storage.staging"), ctx.principal)
    rows = [{"name": f.name} for f in staged]
    return ActionResult(rows=rows, total=len(rows))


ACTIONS = (
    *crud_actions(
        "di", SPEC, see=("di.see-main.", r"^[a-z]+\.see\.di-list$"),
        create=_create, update=_update, delete=_delete,
    ),
    Action(name="di_publish", qvd_object="di", type_of_action="exec",
           acls=("di.update.publish",), handler=_publish),
    Action(name="tag_get_list", qvd_object="di", type_of_action="see",
           acls=("di.see-main.", "di.see.tags", r"^vm\.(create\.|update\.di-tag)$"),
           handler=list_action(TAG_SPEC)),
    Action(name="dis_in_staging", qvd_object="di", type_of_action="see",
           acls=("di.create.",), handler=_in_staging),
    Action(name="tag_tiny_list", qvd_object="di", type_of_action="see",
           acls=("di.see-main.", "di.see.tags", r"^vm\.(create\.|update\.di-tag)$"),
           handler=tiny_action(TAG_SPEC, "tag")),
    *qvd_list_actions(
        "di", SPEC, tiny=("di.see-main.", r"^osf\.filter\.di$"), name_field="disk_image"
    ),
)  # fmt: skip
