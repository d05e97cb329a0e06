"""A throwaway OpenLDAP server (slapd) for the L7R's LDAP tests, plus the helpers the
auth tests share: requests over TLS, and tenants, users and config rows in the database.

The directory (``dc=example,dc=test``)::

    ou=people   alice (alicepw), carol (carolpw), "dan,jr" (danpw): readable by anyone
    ou=staff    sam (sampw): readable only by a bound user (e.g. the reader)
    cn=reader   reader (readerpw): the service account of search-then-bind

slapd runs in the foreground (``-d 0``) as our child on a free loopback port, from a
temporary directory that is removed afterwards; only that child is ever signalled.
The tests under tests/l7r/auth get the fixture from their conftest.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.conftest import end_process, free_port
from tests.l7r.conftest import Lab
from tests.l7r.test_server import final_response

__all__ = [
    "BASE",
    "PEOPLE",
    "READER_DN",
    "READER_PW",
    "STAFF",
    "Directory",
    "Reply",
    "add_osf",
    "add_tenant",
    "add_user",
    "add_vm",
    "basic",
    "bearer",
    "get",
    "ldap_settings",
    "refused",
    "set_config",
    "slapd",
]

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
BASE = "dc=example,dc=test"
PEOPLE = f"ou=people,{BASE}"
STAFF = f"ou=staff,{BASE}"
READER_DN = f"cn=reader,{BASE}"
READER_PW = "readerpw"

# (rdn value, ou, password, uidNumber)
_ACCOUNTS = (
    ("alice", PEOPLE, "alicepw", 10001),
    ("carol", PEOPLE, "carolpw", 10003),
    ("dan,jr", PEOPLE, "danpw", 10004),
    ("sam", STAFF, "sampw", 10005),
)


@dataclass(frozen=True, slots=True)
class Directory:
    """A running slapd: where it listens and the PID of the process we started."""

    uri: str
    pid: int


def _ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - LDAP's {SSHA}
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _dn_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+")


def _seed_ldif() -> str:
    entries = [
        f"dn: {BASE}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n"
        "o: Example\ndc: example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {STAFF}\nobjectClass: organizationalUnit\nou: staff\n",
        f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: reader\nuserPassword: {_ssha(READER_PW)}\n",
    ]
    for uid, ou, password, number in _ACCOUNTS:
        entries.append(
            f"dn: uid={_dn_value(uid)},{ou}\nobjectClass: inetOrgPerson\n"
            f"objectClass: posixAccount\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
            f"uidNumber: {number}\ngidNumber: {number + 1000}\n"
            f"homeDirectory: /home/{uid}\nuserPassword: {_ssha(password)}\n"
        )
    return "\n".join(entries)


def _slapd_conf(workdir: Path) -> str:
    schemas = "".join(
        f"include /etc/ldap/schema/{name}.schema\n"
        for name in ("core", "cosine", "inetorgperson", "nis")
    )
    return (
        f"{schemas}modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
        f"pidfile {workdir}/slapd.pid\nargsfile {workdir}/slapd.args\n"
        f'database mdb\nmaxsize 10485760\nsuffix "{BASE}"\n'
        f'rootdn "cn=admin,{BASE}"\nrootpw {_ssha("rootsecret")}\n'
        f"directory {workdir}/db\nindex objectClass eq\nindex uid eq\n"
        "access to attrs=userPassword by self write by anonymous auth by * none\n"
        f'access to dn.subtree="{STAFF}" by users read by * none\n'
        "access to * by * read\n"
    )


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"slapd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"slapd did not listen on port {port} within 10 s")


@pytest.fixture(scope="module")
def slapd() -> Iterator[Directory]:
    if not SLAPD.exists():
        pytest.fail("slapd is not installed: run scripts/deps-l7r.sh")
    workdir = Path(tempfile.mkdtemp(prefix="qvd-test-slapd-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        (workdir / "db").mkdir()
        conf = workdir / "slapd.conf"
        conf.write_text(_slapd_conf(workdir))
        (workdir / "seed.ldif").write_text(_seed_ldif())
        subprocess.run(
            [str(SLAPADD), "-q", "-f", str(conf), "-l", str(workdir / "seed.ldif")],
            check=True,
            capture_output=True,
            timeout=30,
        )
        log = workdir / "slapd.log"
        for _attempt in range(3):  # the free port may be taken before slapd binds it
            port = free_port()
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [str(SLAPD), "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                _wait_listening(proc, port, log)
                break
            except RuntimeError:
                end_process(proc)
                proc = None
        if proc is None:
            raise RuntimeError(f"slapd would not start: {log.read_text()[-2000:]}")
        yield Directory(uri=f"ldap://127.0.0.1:{port}", pid=proc.pid)
    finally:
        if proc is not None:
            end_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def ldap_settings(directory: Directory, mode: str) -> dict[str, str]:
    """``auth.ldap.*`` rows for one way of binding: ``direct`` (userbindpattern),
    ``search`` (anonymous search of ou=people) or ``search-bind`` (the reader searches
    the whole tree, staff included)."""
    common = {"auth.ldap.host": directory.uri, "auth.ldap.timeout": "3"}
    if mode == "direct":
        return {**common, "auth.ldap.userbindpattern": f"uid=%u,{PEOPLE}"}
    if mode == "search":
        return {**common, "auth.ldap.base": PEOPLE, "auth.ldap.scope": "one"}
    if mode == "search-bind":
        return {
            **common,
            "auth.ldap.base": BASE,
            "auth.ldap.scope": "sub",
            "auth.ldap.filter": "(&(objectClass=posixAccount)(uid=%u))",
            "auth.ldap.binddn": READER_DN,
            "auth.ldap.bindpass": READER_PW,
        }
    raise ValueError(mode)


# ---- the database side ----------------------------------------------------------------------
def add_tenant(engine: Engine, name: str) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                text("INSERT INTO tenants (name) VALUES (:n) RETURNING id"), {"n": name}
            ).scalar_one()
        )


def add_user(engine: Engine, tenant_id: int, login: str, password_hash: str | None = None) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO users (tenant_id, login, password) VALUES (:t, :l, :p) "
                    "RETURNING id"
                ),
                {"t": tenant_id, "l": login, "p": password_hash},
            ).scalar_one()
        )


def add_osf(engine: Engine, tenant_id: int, name: str) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO osfs (tenant_id, name, memory) VALUES (:t, :n, 128) RETURNING id"
                ),
                {"t": tenant_id, "n": name},
            ).scalar_one()
        )


def add_vm(engine: Engine, user_id: int, osf_id: int, name: str) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                text("INSERT INTO vms (name, user_id, osf_id) VALUES (:n, :u, :o) RETURNING id"),
                {"n": name, "u": user_id, "o": osf_id},
            ).scalar_one()
        )


def set_config(engine: Engine, tenant_id: int, values: Mapping[str, str]) -> None:
    """``configs`` rows (tenant -1: global). Write them before the L7R's first login:
    it reads the table then and keeps it for a couple of seconds."""
    with engine.begin() as conn:
        for key, value in values.items():
            conn.execute(
                text(
                    "INSERT INTO configs (tenant_id, key, value) VALUES (:t, :k, :v) "
                    "ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value"
                ),
                {"t": tenant_id, "k": key, "v": value},
            )


# ---- the client side ------------------------------------------------------------------------
def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def bearer(token: str) -> str:
    return "Bearer " + base64.b64encode(token.encode()).decode()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    head: bytes
    body: bytes
    infos: tuple[bytes, ...] = ()

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, sep, value = line.partition(b":")
            if sep and key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None


def get(lab: Lab, target: str, authorization: str | None = None, *, upgrade: bool = False) -> Reply:
    """One ``GET`` on a new TLS connection; 102s are collected, the final reply returned.
    ``upgrade`` adds the Upgrade headers clients send with connect_to_vm and stop_vm."""
    lines = [f"GET {target} HTTP/1.1"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    if upgrade:
        lines += ["Connection: Upgrade", "Upgrade: QVD/1.0"]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with lab.connect() as sock:
        sock.settimeout(20)
        buffer = bytearray()
        sock.sendall(raw)
        head, body, infos = final_response(sock, buffer)
    return Reply(status=int(head[9:12]), head=head, body=body, infos=tuple(infos))


def refused(reply: Reply, reason: bytes) -> None:
    """``reply`` is a Basic challenge (401) whose body gives ``reason``."""
    assert reply.status == 401, reply
    assert reply.header("WWW-Authenticate") == 'Basic realm="QVD"'
    assert reason in reply.body, reply.body
