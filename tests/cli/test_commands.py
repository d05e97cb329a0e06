"""``qa`` end to end against the real API: in-process for most commands, and once
over TLS on a loopback socket with the server ``qvd up`` runs."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from qvd.api.shell.tls import ensure_certificate
from qvd.cli import run
from qvd.config import Config
from qvd.db.models import ApiSession, SslConfig
from tests.api.conftest import World
from tests.cli.conftest import LiveApi, Qa


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
    code, _out, err = qa("vm name=desk del")
    assert code == 1
    assert "needs a confirmation" in err
    assert qa("vm name=desk del --force")[0] == 0
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
    assert [(r["version"], sorted(r["tags"].split(","))) for r in rows] == [
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
    assert out.startswith("qa (QVD admin CLI) ")
    assert "\nAPI: database schema " in out


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


def test_over_tls_with_the_config_file(live_api: LiveApi, api_engine: Engine) -> None:
    conf = live_api.qa_conf(format="csv")
    out, err = io.StringIO(), io.StringIO()
    code = run(["vm", "get", "name"], out=out, err=err, environ={"QA_CONFIG": str(conf)})
    assert code == 0, err.getvalue()
    assert out.getvalue() == "name\nvmA\nvmB\n"
    with Session(api_engine) as session:  # the one-shot command logged out at the end
        assert session.scalar(select(func.count()).select_from(ApiSession)) == 0
    conf.write_text(f"qa.url = {live_api.url}\nqa.login = root\nqa.password = x\n")
    code = run(["vm", "get"], out=out, err=err, environ={"QA_CONFIG": str(conf)})
    assert code == 1
    assert "certificate" in err.getvalue().lower()


def test_every_object_lists(qa: Qa) -> None:
    for obj in ("vm", "user", "host", "osf", "di", "tenant", "config", "admin", "role", "acl",
                "log", "property"):  # fmt: skip
        code, out, err = qa(f"-f json {obj} get")
        assert code == 0, (obj, err)
        assert json.loads(out)["total"] >= 1, obj


def test_fields_aliases_order_and_bare_names(qa: Qa, world: World) -> None:
    code, out, err = qa("-f csv vm get name, user, osf, tag order desc name")
    assert code == 0, err
    assert out == "name,user_name,osf_name,di_tag\nvmB,userb,osfB,default\nvmA,usera,osfA,default\n"
    assert qa("-f csv vm vmA get name")[1] == "name\nvmA\n"
    assert qa("-f csv vm 'vmA;vmB' get id order asc id")[1] == (
        f"id\n{world.vms['A']}\n{world.vms['B']}\n"
    )
    assert qa("-f csv host 'ip_address~node1%' get name, ip_address")[1] == (
        "name,address\nnode1,node1.nodes.test\n"
    )
    assert (
        qa("-f csv di name=imageA.tar get name, version")[1]
        == "disk_image,version\nimageA.tar,v1\n"
    )
    code, out, _ = qa("vm get")  # the default columns, aliases resolved
    assert out.splitlines()[1].split() == [
        "|", "id", "|", "name", "|", "blocked", "|", "user_name", "|", "host_name", "|",
        "di_name", "|", "ip", "|", "ip_in_use", "|", "di_name_in_use", "|", "state", "|",
        "user_state", "|",
    ]  # fmt: skip


def test_changes_without_filters_act_on_every_object_with_force(qa: Qa) -> None:
    code, _out, err = qa("vm block")
    assert code == 1
    assert "without filters acts on every VM" in err
    assert qa("--force vm block")[0] == 0
    assert qa("-f csv vm get blocked")[1] == "blocked\n1\n1\n"
    assert qa("vm unblock --force")[0] == 0
    assert qa("-f csv vm get blocked")[1] == "blocked\n0\n0\n"


def test_role_and_admin_assignments(qa: Qa) -> None:
    assert qa("role new name=ops, tenant_id=1")[0] == 0
    code, _o, err = qa("role name=ops assign role VMs Reader, Users Reader")
    assert code == 0, err
    code, out, _ = qa("-f json role name=ops get roles")
    inherited = json.loads(out)["rows"][0]["roles"]  # QVD's {id: {id, name}}
    assert sorted(r["name"] for r in inherited.values()) == ["Users Reader", "VMs Reader"]
    assert qa("role name=ops unassign role Users Reader")[0] == 0
    assert qa("role name=ops assign acl vm.update.state, vm.see.ip")[0] == 0
    assert qa("role name=ops unassign acl vm.see.ip")[0] == 0  # inherited from VMs Reader: denied
    code, out, _ = qa("-f csv role name=ops can vm.*")
    assert "vm.update.state" in out
    assert "vm.see.ip" not in out
    assert "vm.see.mac" in out
    assert "user.see.id" not in out
    assert qa("admin new name=ana, password=pw, tenant_id=1")[0] == 0
    assert qa("admin name=ana assign role ops")[0] == 0
    code, out, _ = qa("-f json admin name=ana get roles")
    assert list(json.loads(out)["rows"][0]["roles"].values()) == ["ops"]  # QVD's {id: name}
    assert qa("admin name=ana unassign role ops")[0] == 0
    assert qa("-f json admin name=ana get roles")[1].count("ops") == 0
    code, out, _ = qa("-f csv admin can config.*")  # root, the administrator logged in
    assert code == 0
    assert out.splitlines()[1:] == ["config.qvd.", "config.wat."]
    code, _o, err = qa("role name=ops assign acl no.such.acl")
    assert code == 1
    assert "error" in err


def test_property_assign_and_unassign(qa: Qa) -> None:
    assert qa("property new key=pk, objects=[vm], tenant_id=1")[0] == 0
    assert qa("property key=pk assign user, host")[0] == 0
    code, out, _ = qa("-f json property key=pk get key, objects")
    assert sorted(json.loads(out)["rows"][0]["objects"]) == ["host", "user", "vm"]
    assert qa("property key=pk unassign vm, host")[0] == 0
    code, out, _ = qa("-f json property key=pk get objects")
    assert json.loads(out)["rows"][0]["objects"] == ["user"]
    code, _o, err = qa("property key=pk assign spaceship")
    assert code == 1
    assert "6330" in err
    assert qa("property key=pk del --force")[0] == 0


def test_config_default_resets_what_was_changed(qa: Qa) -> None:
    assert qa("config set key=vm.network.ip.start, value=10.3.15.50")[0] == 0
    assert qa("config key=vm.network.netmask set value=16")[0] == 0
    code, out, _ = qa("-f csv config 'key~vm.network.%' get key, is_default order key")
    assert "vm.network.ip.start,0" in out
    assert "vm.network.netmask,0" in out
    code, _o, err = qa("config default")
    assert code == 1
    assert "needs a confirmation" in err
    code, out, err = qa("config default --force")
    assert code == 0, err
    assert "2 configuration tokens reset" in out
    code, out, _ = qa("-f csv config 'key~vm.network.%' get is_default")
    assert set(out.splitlines()[1:]) == {"1"}
    code, _o, err = qa("config key=vm.network.netmask default")
    assert code == 1
    assert "7390" in err


def test_config_ssl_sends_local_pem_files(qa: Qa, tmp_path: Path, api_engine: Engine) -> None:
    cert, key = tmp_path / "l7r.pem", tmp_path / "l7r-key.pem"
    ensure_certificate(cert, key, "127.0.0.1")
    code, _out, err = qa(f"config ssl cert={cert}, key={key}")
    assert code == 0, err
    with Session(api_engine) as session:
        stored = {row.key: row.value for row in session.scalars(select(SslConfig))}
    assert stored["l7r.ssl.cert"].strip() == cert.read_text().strip()
    assert stored["l7r.ssl.key"].strip() == key.read_text().strip()
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other-key.pem"
    ensure_certificate(other_cert, other_key, "127.0.0.1")
    code, _out, err = qa(f"config ssl cert={cert}, key={other_key}")
    assert code == 1
    assert "6320" in err
    code, _out, err = qa(f"config ssl cert={cert}, key={key}", login="adminA", tenant="tenantA")
    assert code == 1
    assert "superadmins" in err


def test_di_from_staging(qa: Qa, world: World, config: Config) -> None:
    staging = config.get_path("path.storage.staging")
    staging.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("etc/os-release"), io.BytesIO(b""))
    (staging / "staged.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    code, out, err = qa(f"di new disk_image=staged.tar.gz, osf_id={world.osfs['B']}, version=s1")
    assert code == 0, err
    code, out, _ = qa("-f csv di version=s1 get name, state")
    assert out.endswith("-staged.tar.gz,published\n")
    code, _o, err = qa(f"di new disk_image=absent.tar.gz, osf_id={world.osfs['B']}")
    assert code == 1
    assert "2240" in err or "staging" in err


def test_failures_exit_non_zero(qa: Qa, world: World) -> None:
    assert qa("vm name=nothing-here start")[0] == 1
    assert qa(f"user new name=usera, password=x, tenant_id={world.tenants['A']}")[0] == 1
    assert qa("vm get nosuchfield")[0] == 1
    assert qa("vm get order nosuchfield")[0] == 1
    assert qa("vm name=x frobnicate")[0] == 2
    assert qa("vm get", tenant="nosuchtenant")[0] == 1
