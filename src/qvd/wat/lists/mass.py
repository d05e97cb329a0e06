"""Mass actions: the rows an administrator ticked, the action they chose and the values
they typed for it, checked (:class:`MassRequest`), run through the API
(:func:`run_mass`) and told back (:class:`MassOutcome`: how many were done, and for
QVD's 1200 which failed and why)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qvd.wat.lists.model import ListView, MassAction
from qvd.wat.port import WatError

if TYPE_CHECKING:
    from qvd.wat.web import Page

__all__ = [
    "MAX_SELECTED",
    "MassOutcome",
    "MassRequest",
    "ids_of",
    "input_name",
    "names_of",
    "run_mass",
]

MAX_SELECTED = 1000
SOME_FAILED = 1200


def ids_of(values: Sequence[str]) -> list[int]:
    """Selected row ids from a form (anything else dropped, duplicates once)."""
    seen: dict[int, None] = {}
    for v in values:
        if v.isdigit() and len(v) < 12:
            seen.setdefault(int(v), None)
    return list(seen)


def input_name(action: MassAction, name: str) -> str:
    """The form field of one of ``action``'s inputs."""
    return f"in.{action.name}.{name}"


@dataclass(slots=True)
class MassRequest:
    """A mass action asked for from a form, checked: ``problem`` says (in English, a
    format string over ``problem_args``) what is wrong with it, if anything."""

    action: MassAction | None
    ids: list[int]
    values: dict[str, str] = field(default_factory=dict)
    problem: str = ""
    problem_args: dict[str, Any] = field(default_factory=dict)
    confirmed: bool = False

    @classmethod
    def from_form(cls, view: ListView, page: Page, form: Mapping[str, Any]) -> MassRequest:
        """``form``: ``op``, ``ids`` (a list), ``confirmed`` and the inputs' fields."""
        op = str(form.get("op", ""))
        action = next((m for m in view.mass_actions(page) if m.name == op), None)
        raw_ids = form.get("ids", [])
        ids = ids_of([str(v) for v in raw_ids] if isinstance(raw_ids, list) else [])
        request = cls(action=action, ids=ids, confirmed=form.get("confirmed") == "1")
        if action is None:
            request.problem = "Choose an action."
        elif not ids:
            request.problem = "Select at least one row."
        elif len(ids) > MAX_SELECTED:
            request.problem = "Select at most {count} rows at once."
            request.problem_args = {"count": MAX_SELECTED}
        else:
            request._read_inputs(action, form)
        return request

    def _read_inputs(self, action: MassAction, form: Mapping[str, Any]) -> None:
        for spec in action.inputs:
            value = str(form.get(input_name(action, spec.name), "")).strip()
            problem = ""
            if not value.isprintable() or len(value) > spec.max_len:
                problem = "{label}: at most {count} printable characters."
            elif spec.required and not value:
                problem = "{label}: a value is needed."
            elif spec.choices and value and value not in {v for v, _ in spec.choices}:
                problem = "{label}: choose one of the offered values."
            if problem:
                self.problem = problem
                self.problem_args = {"label": spec.label, "count": spec.max_len}
                return
            self.values[spec.name] = value

    def explain(self, page: Page) -> str:
        """``problem`` in the administrator's language."""
        args = dict(self.problem_args)
        if "label" in args:
            args["label"] = page.t(str(args["label"]))
        return page.t(self.problem).format(**args)


@dataclass(slots=True)
class MassOutcome:
    """What a mass action did: ``done`` objects when all went well; when QVD answered
    1200 its ``summary`` ("failed for 1 of 3 objects (2 done)") and the ``failures``
    (id, name, message); ``error`` the refusal of the whole action."""

    done: int = 0
    summary: str = ""
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    error: WatError | None = None


def names_of(
    view: ListView, page: Page, ids: Sequence[int], *, keep_missing: bool = True
) -> dict[int, str]:
    """id → name of the objects ``ids`` the administrator may see (the id as text for
    the others, unless ``keep_missing`` is false: then they are left out)."""
    if not ids:
        return {}
    fields = ["id", view.name_field] if view.name_field != "id" else ["id"]
    try:
        answer = page.call(
            view.list_action, filters={"id": list(ids)}, fields=fields, limit=len(ids)
        )
    except WatError:
        return {i: str(i) for i in ids} if keep_missing else {}
    found = {int(r["id"]): str(r.get(view.name_field, r["id"])) for r in answer.rows}
    return {i: found.get(i, str(i)) for i in ids if keep_missing or i in found}


def run_mass(view: ListView, page: Page, request: MassRequest) -> MassOutcome:
    """Run the checked ``request`` as the administrator."""
    assert request.action is not None
    action = request.action
    try:
        answer = page.call(
            action.action,
            filters={"id": request.ids},
            arguments=action.arguments_for(request.values),
        )
    except WatError as exc:
        if exc.status != SOME_FAILED or not exc.failures:
            return MassOutcome(error=exc)
        names = names_of(view, page, sorted(exc.failures))
        failures = [(i, names[i], exc.failures[i][1]) for i in sorted(exc.failures)]
        return MassOutcome(summary=exc.message, failures=failures)
    return MassOutcome(done=len(answer.affected) or len(request.ids))
