"""What a list is made of: its :class:`Column`\\ s, its :class:`MassAction`\\ s (with the
:class:`MassInput`\\ s an admin types for them) and the :class:`ListView` that holds them.
Page modules declare one ``ListView`` each; the engine does the rest."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qvd.wat.web import Page

__all__ = ["FILTER_KINDS", "VIEW_OBJECTS", "Column", "ListView", "MassAction", "MassInput"]

FILTER_KINDS = ("text", "choice", "exact")
"""How a column filters: ``text`` (LIKE ``%value%``), ``choice`` (one of ``choices``, a
select), ``exact`` (equal; ids and numbers)."""

VIEW_OBJECTS = ("user", "vm", "log", "host", "osf", "di", "role", "administrator", "tenant")
"""The kinds of object whose column choice the API stores (``*_view_*`` actions)."""

_BOOL_CHOICES = (("true", "Yes"), ("false", "No"))


@dataclass(frozen=True, slots=True)
class Column:
    """A column: the action's ``field``, its English ``label``; ``kind`` says how a value
    shows (text, number, bool, datetime, state); ``link`` is a URL pattern filled from
    the row (``/users/{user_id}``); ``acl`` the ACL needed to see it; ``default`` whether
    it shows before the administrator chose. ``filter``: ``"auto"`` (from ``kind``: text →
    ``text``, number → ``exact``, bool and state → ``choice``), one of
    :data:`FILTER_KINDS`, or None (no filter); ``choices``: ``(value, English label)``
    pairs of a ``choice`` filter (a state column without them filters by exact text);
    ``choosable``: offered in the column choice (else it always follows ``default``)."""

    field: str
    label: str
    kind: str = "text"
    sortable: bool = True
    link: str | None = None
    acl: str | None = None
    default: bool = True
    filter: str | None = "auto"
    choices: tuple[tuple[str, str], ...] = ()
    choosable: bool = True

    @property
    def filter_kind(self) -> str | None:
        """The filter this column offers (None: none)."""
        if self.filter != "auto":
            return self.filter if self.filter in FILTER_KINDS else None
        if self.kind == "bool" or (self.kind == "state" and self.choices):
            return "choice"
        if self.kind == "text":
            return "text"
        if self.kind in ("number", "state"):
            return "exact"
        return None

    @property
    def filter_choices(self) -> tuple[tuple[str, str], ...]:
        if self.choices:
            return self.choices
        return _BOOL_CHOICES if self.kind == "bool" else ()


@dataclass(frozen=True, slots=True)
class MassInput:
    """A value the administrator types (or picks) for a :class:`MassAction`: ``name``
    (the key it has in what ``MassAction.build`` receives), its English ``label``, at
    most ``max_len`` characters, one of ``choices`` (``(value, English label)``) when
    given; ``required`` refuses an empty value."""

    name: str
    label: str
    max_len: int = 200
    choices: tuple[tuple[str, str], ...] = ()
    required: bool = True


@dataclass(frozen=True, slots=True)
class MassAction:
    """An action on the selected rows: ``action`` run with ``{"id": [ids]}`` as filters
    and ``arguments``; ``confirm`` asks first (deletes). ``inputs`` are values the
    administrator types; ``build`` turns them (name → checked text) into more arguments
    (without it they go in as they are, under their names)."""

    name: str
    label: str
    action: str
    acl: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)
    confirm: bool = False
    inputs: tuple[MassInput, ...] = ()
    build: Callable[[Mapping[str, str]], Mapping[str, Any]] | None = None

    def arguments_for(self, values: Mapping[str, str]) -> dict[str, Any]:
        """The action's arguments with the typed ``values`` (already checked)."""
        extra = self.build(values) if self.build is not None else dict(values)
        return {**self.arguments, **extra}


@dataclass(frozen=True, slots=True)
class ListView:
    """What one list shows and how. ``name_field`` names an object in confirmations and
    results (falls back to its id)."""

    object: str
    path: str
    title: str
    list_action: str
    columns: tuple[Column, ...]
    search: tuple[str, ...] = ("name",)
    detail: str | None = None
    create: str | None = None
    live: tuple[str, ...] = ()
    mass: tuple[MassAction, ...] = ()
    default_order: tuple[tuple[str, bool], ...] = (("id", False),)
    acl: str | None = None
    name_field: str = "name"

    def visible_columns(self, page: Page) -> list[Column]:
        """The columns the administrator may see (ACLs), shown or not."""
        return [c for c in self.columns if c.acl is None or page.can(c.acl)]

    def mass_actions(self, page: Page) -> list[MassAction]:
        return [m for m in self.mass if m.acl is None or page.can(m.acl)]

    @property
    def saves_columns(self) -> bool:
        """Whether the API stores this list's column choice."""
        return self.object in VIEW_OBJECTS
