"""``qa`` end to end against the real API: in-process for most commands, and once
over TLS on a loopback socket with the server ``qvd up`` runs."""

from __future__ import annotations

import gzip
import io
import json
import shlex
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import pytest
from sqlalchemy import Engine

from qvd.api import api_endpoint, create_app, serve
from qvd.cli import run
from qvd.config import Config
from tests.api.asgi import PortalTransport
from tests.api.conftest import PASSWORD, World, api_config
from tests.conftest import free_port


class Qa:
    def __init__(self, transport: PortalTransport | None, base: list[str]) -> None:
        self.transport = transport
        self.base = base

    def __call__(
        self, line: str, *, login: str = "root", tenant: str = "*"
    ) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        argv = [*self.base, "-l", login, "-p", PASSWORD, "-t", tenant, *shlex.split(line)]
        code = run(argv, out=out, err=err, transport=self.transport, environ={"HOME": "/nowhere"})
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def qa(config: Config, api_engine: Engine, world: World) -> Iterator[Qa]:
    with anyio.from_thread.start_blocking_portal() as portal:
        yield Qa(
            PortalTransport(create_app(config, api_engine), portal), ["-u", "https://api.test/"]
        )


def test_a_session_of_commands(qa: Qa, world: World, tmp_path: Path) -> None:
    code, out, err = qa("vm get")
    assert code == 0, err
    assert "vmA" in out
    assert "vmB" in out
    assert out.endswith("Total: 2\n")
    code, out, err = qa(f"user new name=carol, password=pw, tenant_id={world.tenants['A']}")
    assert code == 0, err
    assert qa("vm new name=desk, user=carol, osf=osfA")[0] == 0
    code, out, err = qa("-f csv vm name=desk get name, user, state, tag")
    assert out == "name,user_name,state,di_tag\ndesk,carol,stopped,default\n"
    code, out, err = qa("vm name=desk start")
    assert code == 0, err
    code, out, err = qa("vm name=desk start")
    assert code == 1
    assert "5130" in err
    assert qa("vm name=desk stop")[0] == 0
    assert qa("vm name=desk block")[0] == 0
    assert "1" in qa("-f csv vm name=desk get blocked")[1]
    assert qa("vm name=desk del")[0] == 0
    assert qa("vm name=desk get")[1].endswith("Total: 0\n")


def test_tenant_admin_sees_its_tenant_only(qa: Qa) -> None:
    code, out, _ = qa("vm get", login="adminA", tenant="tenantA")
    assert code == 0
    assert "vmA" in out
    assert "vmB" not in out
    code, _out, err = qa("host get", login="adminA", tenant="tenantA")
    assert code == 1
    assert "4210" in err
    code, _out, err = qa(
        "vm get",
        login="adminA",
        tenant="tenantA",
    )
    assert code == 0


def test_roles_and_can(qa: Qa) -> None:
    assert qa("role new name=ops, tenant_id=1, roles=['VMs Reader']")[0] == 0
    assert qa("role name=ops assign acl vm.update.state")[0] == 0
    code, out, _ = qa("role name=ops can vm.update.*")
    assert code == 0
    assert "vm.update.state" in out
    assert "vm.update.block" not in out
    assert qa("admin new name=ana, password=pw, tenant_id=1, roles=[ops]")[0] == 0
    code, out, _ = qa("admin name=ana can vm.see.ip")
    assert code == 0
    assert "vm.see.ip" in out


def test_di_upload_and_tags(qa: Qa, world: World, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/os-release")
        tar.addfile(info, io.BytesIO(b""))
    image = tmp_path / "desk.tar.gz"
    image.write_bytes(gzip.compress(buf.getvalue()))
    code, out, err = qa(f"di new disk_image={image}, osf_id={world.osfs['A']}, version=v2")
    assert code == 0, err
    assert qa("di version=v2 tag default")[0] == 0
    code, out, _ = qa(f"-f json di osf_id={world.osfs['A']} get version, tags order version")
    rows = json.loads(out)["rows"]
    assert [(r["version"], sorted(r["tags"])) for r in rows] == [
        ("v1", ["v1"]),
        ("v2", ["default", "head", "v2"]),
    ]
    code, _o, err = qa("di version=v2 untag head")
    assert code == 1
    assert "7340" in err


def test_config_and_version(qa: Qa) -> None:
    assert qa("config set key=vm.network.ip.start, value=10.3.15.50")[0] == 0
    code, out, _ = qa("-f csv config key=vm.network.ip.start get key, value, default")
    assert out == "key,operative_value,default_value\nvm.network.ip.start,10.3.15.50,10.0.0.100\n"
    assert qa("config key=vm.network.ip.start default")[0] == 0
    code, out, _ = qa("version")
    assert code == 0
    assert out.startswith("database schema ")


def test_wrong_password_exits_1(qa: Qa) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run(
        ["-u", "https://api.test/", "-l", "root", "-p", "bad", "vm", "get"],
        out=out,
        err=err,
        transport=qa.transport,
        environ={"HOME": "/nowhere"},
    )
    assert code == 1
    assert "3200" in err.getvalue()


def test_over_tls_with_the_config_file(tmp_path: Path, api_engine: Engine, world: World) -> None:
    port = free_port()
    config = api_config(
        tmp_path,
        **{
            "api.port": str(port),
            "path.api.ssl.cert": str(tmp_path / "cert.pem"),
            "path.api.ssl.key": str(tmp_path / "key.pem"),
        },
    )
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=serve, args=(config,), kwargs={"engine": api_engine, "ready": ready, "stop": stop}
    )
    thread.start()
    try:
        assert ready.wait(20)
        endpoint = api_endpoint(config)
        conf = tmp_path / "qa.conf"
        conf.write_text(
            f"qa.url = {endpoint.url}\nqa.login = root\nqa.password = {PASSWORD}\n"
            f"qa.tenant = *\nqa.ca = {endpoint.cert}\nqa.format = csv\n"
        )
        out, err = io.StringIO(), io.StringIO()
        code = run(["vm", "get", "name"], out=out, err=err, environ={"QA_CONFIG": str(conf)})
        assert code == 0, err.getvalue()
        assert out.getvalue() == "name\nvmA\nvmB\n"
        conf.write_text(f"qa.url = {endpoint.url}\nqa.login = root\nqa.password = {PASSWORD}\n")
        code = run(["vm", "get"], out=out, err=err, environ={"QA_CONFIG": str(conf)})
        assert code == 1
        assert "certificate" in err.getvalue().lower()
    finally:
        stop.set()
        thread.join(20)
