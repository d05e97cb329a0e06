"""QVD's filter language (reference §5.2) compiled to SQL, on VM lists."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from qvd.db.models import Vm
from tests.api.conftest import Api, World


@pytest.fixture(scope="module")
def vms(shared: tuple[Api, World, Engine]) -> tuple[Api, str]:
    api, world, engine = shared
    sid = api.login("root")
    for i in range(6):
        r = api.act(
            "vm_create",
            sid=sid,
            arguments={
                "name": f"f{i}",
                "user_id": world.users["A"],
                "osf_id": world.osfs["A"],
                "di_tag": "even" if i % 2 == 0 else "odd",
            },
        )
        assert r["status"] == 0, r
    with Session(engine) as s, s.begin():
        s.execute(update(Vm).where(Vm.name == "f5").values(description="the last one"))
    return api, sid


def names(api: Api, sid: str, filters: Any) -> list[str]:
    r = api.act(
        "vm_get_list",
        sid=sid,
        filters=filters,
        fields=["name"],
        order_by={"field": ["name"], "order": "-asc"},
    )
    assert r["status"] == 0, r
    return [row["name"] for row in r["rows"] if row["name"].startswith("f")]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"name": "f1"}, ["f1"]),
        ({"name": {"=": "f1"}}, ["f1"]),
        ({"name": ["f1", "f3"]}, ["f1", "f3"]),
        ({"name": {"=": ["f1", "f3"]}}, ["f1", "f3"]),
        ({"name": {"!=": ["f1", "f3"]}, "di_tag": "odd"}, ["f5"]),
        ({"name": {"~": "f%"}, "di_tag": {"<>": "odd"}}, ["f0", "f2", "f4"]),
        ({"name": {"LIKE": ["f1%", "f2%"]}}, ["f1", "f2"]),
        ({"name": {">=": "f2", "<=": "f4"}}, ["f2", "f3", "f4"]),
        ({"name": {">": "f2", "<": "f4"}}, ["f3"]),
        ({"-or": [{"name": "f1"}, {"name": "f4"}]}, ["f1", "f4"]),
        ({"-or": {"name": "f1", "di_tag": "even"}}, ["f0", "f1", "f2", "f4"]),
        ({"-and": [{"di_tag": "odd"}, {"-not": {"name": "f3"}}]}, ["f1", "f5"]),
        ({"-not": [{"di_tag": "odd"}], "name": {"~": "f%"}}, ["f0", "f2", "f4"]),
        ({"description": None, "name": {"~": "f%"}, "di_tag": "odd"}, ["f1", "f3"]),
        ({"description": {"!=": None}}, ["f5"]),
        ({"blocked": "0", "name": "f0"}, ["f0"]),
        ({"blocked": True}, []),
        # the WAT's flat -or pairs, ids and numbers as strings
        ({"-or": ["name", "f1", "name", "f4"]}, ["f1", "f4"]),
        ({"-or": ["name", "f1", {"name": "f2"}, "di_tag", "odd"]}, ["f1", "f2", "f3", "f5"]),
        ({"-and": ["di_tag", "odd", "-not", {"name": "f3"}]}, ["f1", "f5"]),
        ({"-or": ["blocked", 1, "name", "f0"]}, ["f0"]),
    ],
)
def test_filters(vms: tuple[Api, str], filters: Any, expected: list[str]) -> None:
    api, sid = vms
    assert names(api, sid, filters) == expected


@pytest.mark.parametrize(
    ("filters", "status"),
    [
        ({"id": {"~": "1%"}}, 6310),
        ({"blocked": "maybe"}, 6310),
        ({"id": {"<": None}}, 6230),
        ({"name": {}}, 6210),
        ({"name": {"<": ["a", "b"]}}, 6230),
        ("name=f1", 6210),
        ({"properties": "x"}, 6210),
        ({"-or": ["name", "f1", "name"]}, 6210),
        ({"-or": ["nope", 1]}, 6210),
    ],
)
def test_bad_filters(vms: tuple[Api, str], filters: Any, status: int) -> None:
    api, sid = vms
    assert api.act("vm_get_list", sid=sid, filters=filters)["status"] == status


def test_order_and_fields(vms: tuple[Api, str]) -> None:
    api, sid = vms
    r = api.act(
        "vm_get_list",
        sid=sid,
        filters={"name": {"~": "f%"}},
        fields=["name", "di_tag"],
        order_by={"field": ["di_tag", "name"], "order": "-desc"},
        block=3,
    )
    assert r["total"] == 6
    assert r["rows"] == [
        {"name": "f5", "di_tag": "odd"},
        {"name": "f3", "di_tag": "odd"},
        {"name": "f1", "di_tag": "odd"},
    ]
