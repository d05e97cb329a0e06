"""WAT roles and administrators benchmark: the ACL editor of a built-in role with a deep
inheritance tree (Total Master, every ACL), of a custom role that inherits Master and
denies one ACL, and an administrator's page (its effective ACLs through Root); p50/p95
of the whole server-rendered page.

It makes its own throwaway PostgreSQL cluster (fsync off) with ``bench/api.py``'s world,
runs the API (and the WAT) over TLS in a separate process as ``qvd up`` does, logs in
through the WAT's form and talks to it over loopback, then removes everything. Run as
root:

    .venv/bin/python bench/wat_roles.py [--quick]

The last line printed is ``role_builtin_p50_ms=… role_custom_p50_ms=… admin_page_p50_ms=…
role_builtin_p95_ms=…``. Target: a page < 300 ms (issue 14).
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import statistics
import sys
import time

import httpx

from api import PASSWORD, _serve, populate
from benchkit import (
    cleanup_begins,
    exit_on_sigterm,
    free_port,
    percentile,
    scratch_dir,
    throwaway_database,
    wait_listening,
)

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def timed(client: httpx.Client, path: str, rounds: int, must: str) -> tuple[float, float]:
    client.get(path)  # warm up
    times: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        reply = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert reply.status_code == 200, reply.text[:500]
        assert must in reply.text, must
    return statistics.median(times), percentile(times, 0.95)


def first_id(client: httpx.Client, path: str) -> int:
    match = re.search(r'<tr data-id="(\d+)"', client.get(path).text)
    assert match, path
    return int(match.group(1))


def custom_role(client: httpx.Client, csrf: str, master: int) -> int:
    """A role of the first tenant that inherits Master and denies one ACL (WAT forms)."""
    tenant = re.search(r'<option value="(\d+)"', client.get("/roles/new").text)
    assert tenant, "no tenant to create the role in"
    made = client.post(
        "/roles/new", data={"csrf": csrf, "name": "bench role", "tenant_id": tenant.group(1)}
    )
    assert made.status_code == 303, made.text[:500]
    role = int(made.headers["location"].rsplit("/", 1)[1])
    for path, data in (
        (f"/roles/{role}/roles", {"role": str(master), "how": "inherit"}),
        (f"/roles/{role}/acls", {"acl": "vm.see.ip", "how": "deny"}),
    ):
        assert client.post(path, data={"csrf": csrf, **data}).status_code == 303
    return role


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    args = parser.parse_args()
    rounds = 10 if args.quick else 50
    with (
        scratch_dir("qvd-bench-wat-roles-") as base,
        throwaway_database(base, spread_vm_ids=False) as db,
    ):
        cluster = db.cluster
        populate(db.engine)
        db.engine.dispose()
        port = free_port()
        overrides = {
            "api.port": str(port), "path.api.ssl.cert": str(base / "cert.pem"),
            "path.api.ssl.key": str(base / "key.pem"), "path.storage.root": str(base / "st"),
        }  # fmt: skip
        url = (f"postgresql:///{cluster.dbname}?host={cluster.socket_dir}&port={cluster.port}"
               f"&user={cluster.role}")  # fmt: skip
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=(overrides, url))
        try:
            server.start()
            wait_listening(port, 30)
            base_url = f"https://127.0.0.1:{port}"
            with httpx.Client(base_url=base_url, verify=str(base / "cert.pem"), timeout=60) as c:
                form = {"login": "bench", "password": PASSWORD, "tenant": "*", "next": "/"}
                assert c.post("/login", data=form).status_code == 303
                csrf = _CSRF.search(c.get("/").text)
                assert csrf
                builtin = first_id(c, "/roles?q=Total+Master")
                master = first_id(c, "/roles?q=Master&sort=name")
                role = custom_role(c, csrf.group(1), master)
                admin = first_id(c, "/administrators?q=bench")
                b50, b95 = timed(c, f"/roles/{builtin}", rounds, "Effective result")
                print(f"built-in role editor: p50 {b50:.1f} ms, p95 {b95:.1f} ms", flush=True)
                c50, c95 = timed(c, f"/roles/{role}", rounds, "no: denied here")
                print(f"custom role editor: p50 {c50:.1f} ms, p95 {c95:.1f} ms", flush=True)
                a50, a95 = timed(c, f"/administrators/{admin}", rounds, "Effective ACLs")
                print(f"administrator page: p50 {a50:.1f} ms, p95 {a95:.1f} ms", flush=True)
            print(
                f"role_builtin_p50_ms={b50:.1f} role_custom_p50_ms={c50:.1f} "
                f"admin_page_p50_ms={a50:.1f} role_builtin_p95_ms={b95:.1f}"
            )
        finally:
            cleanup_begins()
            if server.pid is not None:
                server.terminate()
                server.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
