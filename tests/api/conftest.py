"""API test fixtures: an in-process app over a fresh real database, and a small world
of two tenants (A and B) with their admins, users, OSFs, DIs and VMs plus a host."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from qvd.api import create_app, serve
from qvd.config import Config
from qvd.db import hash_password, make_engine
from qvd.db.models import (
    Administrator,
    Di,
    DiRuntime,
    DiTag,
    Host,
    HostRuntime,
    Osf,
    PropertyDefinition,
    Role,
    RoleAdministratorRelation,
    Tenant,
    User,
    Vm,
)
from tests.api.asgi import asgi_client
from tests.conftest import create_database, drop_database, free_port

PASSWORD = "pw-for-tests"
_HASH = hash_password(PASSWORD)


def api_config(tmp: Path, **extra: str) -> Config:
    values = {
        "path.storage.root": str(tmp / "storage"),
        "api.login.rate_limit.attempts": "5",
        **extra,
    }
    return Config().with_overrides(values, source="test")


@dataclass
class RunningApi:
    """A real API server (TLS, uvicorn) in a thread; ``stop`` ends it."""

    config: Config
    port: int
    stop: threading.Event
    thread: threading.Thread


@contextmanager
def running_api(tmp: Path, engine: Engine, certs: Path | None = None) -> Iterator[RunningApi]:
    """``qvd.api.serve`` on a free loopback port, its certificate under ``certs``;
    stopped (and checked to have ended) on exit."""
    port = free_port()
    certs = certs or tmp
    config = api_config(tmp, **{
        "api.port": str(port), "path.api.ssl.cert": str(certs / "cert.pem"),
        "path.api.ssl.key": str(certs / "key.pem"),
    })  # fmt: skip
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=serve, args=(config,), kwargs={"engine": engine, "ready": ready, "stop": stop}
    )
    thread.start()
    try:
        assert ready.wait(20)
        yield RunningApi(config, port, stop, thread)
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()


class Api:
    """An in-process client with QVD helpers; ``as_(name, tenant)`` logs in once per admin."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self._sids: dict[tuple[str, str], str] = {}

    def act(self, action: str, *, sid: str | None = None, **body: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {"action": action, **body}
        if sid is not None:
            payload["sid"] = sid
        response = self.client.post("/api", json=payload)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def login(self, name: str, tenant: str = "*", password: str = PASSWORD) -> str:
        key = (name, tenant)
        if key not in self._sids:
            r = self.act("current_admin_setup", login=name, password=password, tenant=tenant)
            assert r["status"] == 0, r
            self._sids[key] = r["sid"]
        return self._sids[key]

    def headers(self, name: str, tenant: str = "*") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.login(name, tenant)}"}


@dataclass
class World:
    """Ids of what the world holds, per tenant label."""

    tenants: dict[str, int] = field(default_factory=dict)
    admins: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    osfs: dict[str, int] = field(default_factory=dict)
    dis: dict[str, int] = field(default_factory=dict)
    vms: dict[str, int] = field(default_factory=dict)
    roles: dict[str, int] = field(default_factory=dict)
    props: dict[str, int] = field(default_factory=dict)
    policies: dict[str, int] = field(default_factory=dict)  # made by the tests that need them
    host: int = 0


def add_admin(session: Session, name: str, tenant_id: int, role: str | None = "Root") -> int:
    admin = Administrator(tenant_id=tenant_id, name=name, password=_HASH)
    session.add(admin)
    session.flush()
    if role is not None:
        role_id = session.scalar(select(Role.id).where(Role.name == role, Role.tenant_id == -1))
        assert role_id is not None
        session.add(RoleAdministratorRelation(role_id=role_id, administrator_id=admin.id))
    return admin.id


def add_running_host(session: Session, name: str = "node1", free_ram: float = 8000) -> int:
    host = Host(name=name, address=f"{name}.nodes.test")
    session.add(host)
    session.flush()
    session.execute(
        update(HostRuntime)
        .where(HostRuntime.host_id == host.id)
        .values(
            state="running",
            ok_ts=dt.datetime.now(dt.UTC),
            free_ram_mb=free_ram,
            idle_cpu=0.9,
            running_vms=0,
        )
    )
    return host.id


def build_world(engine: Engine) -> World:
    w = World()
    with Session(engine) as s, s.begin():
        add_admin(s, "root", 0)
        w.host = add_running_host(s)
        for label in ("A", "B"):
            tenant = Tenant(name=f"tenant{label}")
            s.add(tenant)
            s.flush()
            w.tenants[label] = tenant.id
            w.admins[label] = add_admin(s, f"admin{label}", tenant.id)
            user = User(tenant_id=tenant.id, login=f"user{label.lower()}", password=_HASH)
            osf = Osf(tenant_id=tenant.id, name=f"osf{label}", memory=256)
            role = Role(tenant_id=tenant.id, name=f"role{label}")
            prop = PropertyDefinition(tenant_id=tenant.id, key=f"prop{label}")
            s.add_all([user, osf, role, prop])
            s.flush()
            w.props[label] = prop.id
            w.users[label], w.osfs[label], w.roles[label] = user.id, osf.id, role.id
            di = Di(osf_id=osf.id, path=f"image{label}.tar", version="v1", pending_tags=[])
            s.add(di)
            s.flush()
            s.add_all(
                [
                    DiTag(di_id=di.id, tag="v1", fixed=True),
                    DiTag(di_id=di.id, tag="default"),
                    DiTag(di_id=di.id, tag="head"),
                ]
            )
            s.execute(update(DiRuntime).where(DiRuntime.di_id == di.id).values(state="published"))
            w.dis[label] = di.id
            vm = Vm(
                name=f"vm{label}", user_id=user.id, osf_id=osf.id, ip=f"10.3.0.{len(w.vms) + 10}"
            )
            s.add(vm)
            s.flush()
            w.vms[label] = vm.id
    return w


@pytest.fixture
def api_engine(db: Any) -> Iterator[Engine]:
    engine = make_engine(db)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return api_config(tmp_path)


@pytest.fixture
def api(config: Config, api_engine: Engine) -> Iterator[Api]:
    with asgi_client(create_app(config, api_engine)) as client:
        yield Api(client)


@pytest.fixture
def world(api_engine: Engine) -> World:
    return build_world(api_engine)


@pytest.fixture(scope="module")
def shared(
    pg_cluster: Any, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, World, Engine]]:
    """One world for a whole module (read-mostly tests)."""
    target = create_database(pg_cluster, template_db)
    engine = make_engine(target)
    try:
        world = build_world(engine)
        config = api_config(tmp_path_factory.mktemp("shared"))
        with asgi_client(create_app(config, engine)) as client:
            yield Api(client), world, engine
    finally:
        engine.dispose()
        drop_database(pg_cluster, target)


# ---- limits set by configuration tokens (uploads/test_images, actions/test_auth) ----
UPLOAD_LIMIT = 16384  # a tarball is at least 10240 bytes


@pytest.fixture
def limited(tmp_path: Path, api_engine: Engine, world: World) -> Iterator[tuple[Api, Config]]:
    config = api_config(
        tmp_path,
        **{
            "api.di.upload.max_size": str(UPLOAD_LIMIT),
            "api.login.rate_limit.attempts": "2",
            "api.login.rate_limit.window": "1",
        },
    )
    with asgi_client(create_app(config, api_engine)) as client:
        yield Api(client), config
