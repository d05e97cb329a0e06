"""An L7R setting changed through the API applies to the next connect of a running L7R
(real TLS listener, real PostgreSQL): ``l7r.limits.connects_per_user`` lowered from 2
to 1 refuses the second connect of a user at once, naming the new limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from qvd.api import create_app
from qvd.db import DatabaseTarget
from qvd.l7r import L7rServer
from tests.api.asgi import asgi_client
from tests.api.conftest import Api, add_admin, api_config
from tests.hkd.conftest import wait_for
from tests.l7r.conftest import l7r_config, seed
from tests.l7r.test_server_limits import WAITING, _connect, _open, _until


@pytest.fixture
def server(
    db: DatabaseTarget, engine: Engine, tmp_path: Path
) -> Iterator[tuple[L7rServer, list[int]]]:
    seeded = seed(engine)
    with engine.begin() as conn:
        osf = conn.execute(
            text("SELECT osf_id FROM vms WHERE id = :v"), {"v": seeded.vm_id}
        ).scalar_one()
        other = conn.execute(
            text("INSERT INTO vms (name, user_id, osf_id) VALUES ('alice-2', :u, :o) RETURNING id"),
            {"u": seeded.user_id, "o": osf},
        ).scalar_one()
    config = l7r_config(
        tmp_path / "run",
        **{
            "internal.l7r.timeout.vm_start": "120",
            "internal.l7r.timeout.request": "20",
            "l7r.limits.connects_per_user": "2",
            "l7r.limits.connect_workers": "4",
        },
    )
    l7r = L7rServer(config, db, seeded.host_id, "127.0.0.1")
    l7r.start()
    try:
        yield l7r, [seeded.vm_id, other]
    finally:
        l7r.stop()


def test_a_lower_per_user_cap_applies_to_the_next_connect(
    server: tuple[L7rServer, list[int]], engine: Engine, tmp_path: Path
) -> None:
    l7r, vms = server
    assert l7r.core is not None
    with Session(engine) as session, session.begin():
        add_admin(session, "root", 0)
    with asgi_client(create_app(api_config(tmp_path), engine)) as client:
        api = Api(client)
        r = api.act(
            "config_set",
            sid=api.login("root"),
            arguments={"key": "l7r.limits.connects_per_user", "value": "1"},
        )
        assert r["status"] == 0, r
    live = l7r.core.live
    wait_for(lambda: live.get().get_int("l7r.limits.connects_per_user") == 1, 15, "the L7R's rows")
    with _open(l7r.port) as first:
        _connect(first, vms[0])
        assert WAITING in _until(first, WAITING)
        with _open(l7r.port) as second:
            _connect(second, vms[1])
            refused = _until(second, b"retry later")
    assert refused.startswith(b"HTTP/1.1 503 "), refused
    assert b"the limit is 1" in refused
