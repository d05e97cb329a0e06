"""Every text the WAT shows has a Spanish entry, and every Spanish entry is used.

Texts are collected by parsing, not by regular expressions over code:
- templates (``src/qvd/wat/templates/**/*.html``): every ``_("…")`` call with a literal,
  found in the Jinja AST of the WAT's own environment;
- Python (``src/qvd/wat/**/*.py``: the pages, the list engine): ``t("…")``, ``page.t("…")`` and
  ``_("…")`` calls, the labels declared for later translation (``ListView`` titles,
  ``Column``/``MassAction``/``MenuItem`` labels, positional or by keyword) and any
  ``label=``/``title=`` keyword given a literal, and module constants (UPPER_CASE) that
  are tuples of ``("key", "Label")`` pairs (the dashboard's figures, select options).

An entry is stale when its English text appears nowhere in the WAT: in no template
(as any literal) and as no string constant in its Python. Labels that reach ``_`` through
a variable (``_(item.label)``) are literals in the Python, so they count as used; so do
the display forms of the data model's values (``upload_stalled`` → "Upload stalled",
as a page shows a state with ``_(state.replace("_", " ").capitalize())``).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jinja2 import nodes

from qvd.wat.web import templates

WAT = Path(__file__).resolve().parents[2] / "src/qvd/wat"
MODELS = WAT.parent / "db/models.py"  # the data model: states and kinds the pages show
CATALOGUE = WAT / "i18n/es"
TEMPLATES = WAT / "templates"
PYTHON = sorted(p for p in WAT.rglob("*.py") if "node_modules" not in p.parts)

# constructor → index of its positional label argument
LABELLED = {"ListView": 2, "Column": 1, "MassAction": 1, "MenuItem": 1}
LABEL_KEYWORDS = frozenset({"label", "title"})
TRANSLATE_CALLS = frozenset({"t", "_"})
PLACEHOLDER = re.compile(r"\{[a-z_0-9]*\}|%\(?[a-z_]*\)?[sd]")


@dataclass(frozen=True, slots=True)
class Use:
    """One text to translate and where it is asked for."""

    text: str
    where: str


def _relative(path: Path) -> str:
    return str(path.relative_to(WAT)) if path.is_relative_to(WAT) else path.name


# ---- templates -----------------------------------------------------------------------
def _template_ast(path: Path) -> nodes.Template:
    return templates.parse(path.read_text(encoding="utf-8"), path.name, str(path))


def template_uses(path: Path) -> Iterator[Use]:
    for call in _template_ast(path).find_all(nodes.Call):
        if (
            isinstance(call.node, nodes.Name)
            and call.node.name == "_"
            and call.args
            and isinstance(call.args[0], nodes.Const)
            and isinstance(call.args[0].value, str)
        ):
            yield Use(call.args[0].value, f"{_relative(path)}:{call.lineno}")


def template_literals(path: Path) -> set[str]:
    found = {c.value for c in _template_ast(path).find_all(nodes.Const) if isinstance(c.value, str)}
    return found


# ---- Python --------------------------------------------------------------------------
def _called_name(call: ast.Call) -> str:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return ""


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def python_uses(path: Path) -> Iterator[Use]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = _called_name(call)
        found: list[str | None] = []
        if name in TRANSLATE_CALLS and call.args:
            found.append(_literal(call.args[0]))
        if name in LABELLED and len(call.args) > LABELLED[name]:
            found.append(_literal(call.args[LABELLED[name]]))
        found += [_literal(k.value) for k in call.keywords if k.arg in LABEL_KEYWORDS]
        for text in found:
            if text:
                yield Use(text, f"{_relative(path)}:{call.lineno}")


def _label_pairs(value: ast.expr) -> list[tuple[str, int]]:
    """``("key", "Label")`` pairs of a tuple/list constant (labels start upper-case)."""
    if not isinstance(value, ast.Tuple | ast.List):
        return []
    pairs: list[tuple[str, int]] = []
    for item in value.elts:
        if not (isinstance(item, ast.Tuple) and len(item.elts) == 2):
            return []
        key, label = (_literal(e) for e in item.elts)
        if key is None or label is None or not label[:1].isupper():
            return []
        pairs.append((label, item.lineno))
    return pairs


def python_label_constants(path: Path) -> Iterator[Use]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        else:
            continue
        if all(isinstance(t, ast.Name) and t.id.isupper() for t in targets):
            for label, line in _label_pairs(value):
                yield Use(label, f"{_relative(path)}:{line}")


def python_literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


# ---- what the WAT asks for and what the catalogue holds ------------------------------
def all_uses() -> list[Use]:
    uses = [u for p in sorted(TEMPLATES.rglob("*.html")) for u in template_uses(p)]
    uses += [u for p in PYTHON for u in python_uses(p)]
    return uses + [u for p in PYTHON for u in python_label_constants(p)]


def all_literals() -> set[str]:
    found: set[str] = set()
    for path in sorted(TEMPLATES.rglob("*.html")):
        found |= template_literals(path)
    for path in PYTHON:
        found |= python_literals(path)
    values = python_literals(MODELS)
    return found | {v.replace("_", " ").capitalize() for v in values if v.isidentifier()}


def catalogue_files() -> list[Path]:
    return sorted(CATALOGUE.glob("*.json"))


def load(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a JSON object"
    return data


def spanish() -> dict[str, tuple[str, str]]:
    """English → (Spanish, file)."""
    merged: dict[str, tuple[str, str]] = {}
    for path in catalogue_files():
        for english, translation in load(path).items():
            merged.setdefault(english, (translation, path.name))
    return merged


# ---- the checks ----------------------------------------------------------------------
SAMPLE_TEMPLATE = """{% extends "base.html" %}
{% block main %}<h1>{{ _("Sample title") }}</h1>{{ m.input(_("Sample field"), "x") }}
{{ _(variable) }}{{ "not asked for" }}{% endblock %}
"""
SAMPLE_PYTHON = """
FIGURES = (("vms_count", "Sample figure"), ("users_count", "Other figure"))
PAIRS_OF_NAMES = (("a", "b"),)
VIEW = ListView("vm", "/vms", "Sample list", "vm_get_list", columns=(
    Column("id", "Sample column"), Column(field="x", label="Keyword column"),
))
MASS = MassAction("start", "Sample mass action", "vm_start")
MENU = MenuItem("/x", "Sample menu")
def route(page):
    page.flash("ok", page.t("Sample flash"))
    return t("Sample t") + str(VIEW)
"""


def test_the_collectors_find_each_kind_of_text(tmp_path: Path) -> None:
    """The parsers themselves, on a sample template and page module."""
    template, module = tmp_path / "sample.html", tmp_path / "sample.py"
    template.write_text(SAMPLE_TEMPLATE, encoding="utf-8")
    module.write_text(SAMPLE_PYTHON, encoding="utf-8")
    in_template = {u.text for u in template_uses(template)}
    in_python = {u.text for u in python_uses(module)}
    in_python |= {u.text for u in python_label_constants(module)}
    literals = template_literals(template)
    assert in_template == {"Sample title", "Sample field"}
    assert in_python == {
        "Sample figure", "Other figure", "Sample list", "Sample column", "Keyword column",
        "Sample mass action", "Sample menu", "Sample flash", "Sample t",
    }  # fmt: skip
    assert "not asked for" in literals  # a stale check sees every literal


def test_the_wat_itself_is_seen() -> None:
    texts = {u.text for u in all_uses()}
    assert {"Skip to content", "Virtual machines", "Search"} <= texts


def test_every_text_has_a_spanish_entry() -> None:
    known = spanish()
    missing: dict[str, list[str]] = {}
    for use in all_uses():
        if use.text not in known:
            missing.setdefault(use.text, []).append(use.where)
    listing = "\n".join(f"  {text!r}  ({', '.join(where[:3])})" for text, where in missing.items())
    assert not missing, (
        f"{len(missing)} text(s) without a Spanish entry in i18n/es/*.json:\n{listing}"
    )


def test_no_spanish_entry_is_stale() -> None:
    used = all_literals()
    stale = [
        f"  {english!r} ({where})"
        for english, (_, where) in sorted(spanish().items())
        if english not in used
    ]
    assert not stale, "Spanish entries no template or page uses:\n" + "\n".join(stale)


@pytest.mark.parametrize("path", catalogue_files(), ids=lambda p: p.name)
def test_a_catalogue_file_is_a_json_object_of_texts(path: Path) -> None:
    entries = load(path)
    assert entries, f"{path.name} is empty"
    for english, translation in entries.items():
        assert isinstance(translation, str), f"{path.name}: {english!r} → {translation!r}"
        assert translation.strip(), f"{path.name}: {english!r} has an empty translation"
        assert translation == translation.strip(), f"{path.name}: {english!r}: stray spaces"
        assert sorted(PLACEHOLDER.findall(english)) == sorted(PLACEHOLDER.findall(translation)), (
            f"{path.name}: {english!r} → {translation!r}: the placeholders differ"
        )


def test_no_text_is_translated_twice_differently() -> None:
    seen: dict[str, tuple[str, str]] = {}
    clashes: list[str] = []
    for path in catalogue_files():
        for english, translation in load(path).items():
            if english in seen and seen[english][0] != translation:
                first, where = seen[english]
                clashes.append(f"  {english!r}: {where} {first!r} ≠ {path.name} {translation!r}")
            seen.setdefault(english, (translation, path.name))
    assert not clashes, "texts translated differently in two files:\n" + "\n".join(clashes)


def test_duplicate_keys_in_one_file_are_refused() -> None:
    for path in catalogue_files():
        pairs = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=list)
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        assert not twice, f"{path.name} defines {twice} twice (JSON keeps only the last)"
