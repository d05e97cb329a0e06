"""A test-only list over VMs with mass actions of every kind (plain, confirmed, with
typed values, with built arguments), mounted at ``/test-vms`` by the list tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter

from qvd.wat.lists import Column, ListView, MassAction, MassInput, list_router
from qvd.wat.lists.choices import USER_STATE_CHOICES, VM_STATE_CHOICES
from qvd.wat.pages.vms import VIEW as VM_VIEW
from tests.wat.conftest import Wat, open_engine, serve_wat

__all__ = ["TEST_VIEW", "extra_router", "wat"]


def _set_property(values: Mapping[str, str]) -> dict[str, Any]:
    return {"__properties_changes__": {"set": {values["key"]: values["value"]}}}


def _with_choices(column: Column) -> Column:
    choices = {"state": VM_STATE_CHOICES, "user_state": USER_STATE_CHOICES}.get(column.field)
    return dataclasses.replace(column, choices=choices) if choices else column


TEST_VIEW = ListView(
    object="vm",
    path="/test-vms",
    title="Virtual machines",
    list_action="vm_get_list",
    columns=(
        *(_with_choices(c) for c in VM_VIEW.columns),
        Column("description", "Description", acl="vm.see.description", default=False),
    ),
    live=("state", "blocked"),
    mass=(
        MassAction("block", "Block", "vm_update", acl="vm.update.block",
                   arguments={"blocked": True}),
        MassAction("start", "Start", "vm_start", acl="vm.update.state"),
        MassAction("delete", "Delete", "vm_delete", acl="vm.delete.", confirm=True),
        MassAction("describe", "Describe", "vm_update",
                   inputs=(MassInput("description", "Description", max_len=40),)),
        MassAction("set_property", "Set a property", "vm_update", build=_set_property,
                   inputs=(MassInput("key", "Key", max_len=64), MassInput("value", "Value"))),
    ),
)  # fmt: skip


def extra_router() -> APIRouter:
    """The list routes of :data:`TEST_VIEW` (mounted next to the WAT's own)."""
    return list_router(TEST_VIEW)


@pytest.fixture
def wat(db: Any, tmp_path: Path) -> Iterator[Wat]:
    """The WAT (as ``tests.wat.conftest.wat``), with the test list at /test-vms:
    import it into a test module to use it there."""
    with open_engine(db) as engine, serve_wat(engine, tmp_path, extra_router()) as client:
        yield client
