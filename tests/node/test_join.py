"""``qvd node token`` + ``qvd node join``: two nodes, each in its own network namespace,
join one database over TCP with one command each; both are registered and heartbeat.
A used or expired token is refused with a clear message and leaves no host row."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.config import load_config
from qvd.db import DatabaseTarget
from qvd.node.jointoken import decode_token
from tests.conftest import end_process
from tests.hkd.conftest import command, state_of, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.node.joinnet import (
    JoinNet,
    fake_node_conf,
    host_rows,
    join_net,
    wait_running,
)
from tests.node.test_cli import url_of

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def net() -> Iterator[JoinNet]:
    with join_net() as made:
        yield made


def make_token(net: JoinNet, *args: str) -> str:
    """``qvd node token`` as the database's administrator (socket, superuser)."""
    p = net.admin().params
    url = f"postgresql://postgres@/{p['dbname']}?host={p['host']}&port={p['port']}"
    env = {**os.environ, "QVD_DATABASE_URL": url}
    env.pop("QVD_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "qvd", "node", "token", "--db-host", net.db_address,
         "--db-port", str(net.cluster.port), *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # the token alone on stdout, the words on stderr
    assert "only time" in done.stderr
    return lines[0]


def join(
    net: JoinNet, ns: str, name: str, token: str, *, start: bool = True
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    conf = fake_node_conf(net.base / f"{name}.conf", net.base, name)
    log = net.base / f"{name}.log"
    args = ["node", "join", "--token", "-", "--name", name, "--config", str(conf),
            "--log", "stderr", *([] if start else ["--no-start"])]  # fmt: skip
    return net.qvd_in(ns, args, log, stdin=token + "\n"), conf, log


def test_two_nodes_join_one_database_and_heartbeat(net: JoinNet) -> None:
    engine = net.engine()
    try:
        joined, tokens = [], []
        for i, name in enumerate(("node-a", "node-b")):
            ns, address = net.add_namespace(i)
            token = make_token(net, "--host", name)
            tokens.append(token)
            proc, conf, log = join(net, ns, name, token)
            joined.append((name, address, proc, conf, log))
        for name, address, proc, conf, log in joined:
            wait_running(engine, name, log, proc)
            assert host_rows(engine)[name][0] == address  # its address on the fleet's net
            # node.conf: 0600, the node's own role and password, read back by the loader
            assert stat.S_IMODE(conf.stat().st_mode) == 0o600
            cfg = load_config(conf)
            assert cfg.get("nodename") == name
            assert cfg.get("database.user").startswith("qvd_node_")
            assert cfg.get("database.host") == net.db_address
            assert len(cfg.get("database.password")) >= 40
            said = log.read_text()
            assert "join token accepted" in said
            assert cfg.get("database.password") not in said  # no secret in the log
        for (_, _, _, _, log), token in zip(joined, tokens, strict=True):
            assert decode_token(token).secret not in log.read_text()
        # heart-beating: each node's ok_ts moves on
        before = {n: host_rows(engine)[n][2] for n, *_ in joined}
        time.sleep(3)
        after = {n: host_rows(engine)[n][2] for n, *_ in joined}
        for name in before:
            assert after[name] is not None
            assert before[name] is not None
            assert after[name] > before[name], name  # type: ignore[operator]
        with engine.connect() as conn:
            used = conn.execute(
                text("SELECT used_by_host FROM node_join_tokens WHERE used_at IS NOT NULL")
            ).scalars()
            assert sorted(used) == ["node-a", "node-b"]
        # a clean stop (SIGTERM) marks the node stopped
        proc = joined[0][2]
        proc.terminate()
        assert proc.wait(60) == 0, joined[0][4].read_text()
        assert host_rows(engine)["node-a"][1] == "stopped"
    finally:
        engine.dispose()


def test_a_used_token_is_refused_with_no_host_row(net: JoinNet) -> None:
    engine = net.engine()
    try:
        ns, _ = net.add_namespace(0)
        token = make_token(net)
        first, _, log = join(net, ns, "node-a", token, start=False)
        assert first.wait(120) == 0, log.read_text()
        again, _, log2 = join(net, ns, "node-c", token, start=False)
        assert again.wait(120) == 1
        out = log2.read_text()
        assert "join token refused" in out, out
        assert "used already" in out or "already used" in out, out
        assert token.split(".")[1][:20] not in out  # the token is never echoed
        assert "node-c" not in host_rows(engine)
    finally:
        engine.dispose()


def refused_join(net: JoinNet, name: str, token: str) -> str:
    """``qvd node join`` as ``name`` from a fresh namespace: it fails (exit 1) and leaves
    no host row; its log."""
    engine = net.engine()
    try:
        ns, _ = net.add_namespace(0)
        proc, _, log = join(net, ns, name, token, start=False)
        assert proc.wait(120) == 1
        assert host_rows(engine) == {}
        return log.read_text()
    finally:
        engine.dispose()


def test_an_expired_token_is_refused_with_no_host_row(net: JoinNet) -> None:
    token = make_token(net, "--ttl", "1s")
    while decode_token(token).expiration.timestamp() > time.time() - 0.5:
        time.sleep(0.2)
    said = refused_join(net, "node-a", token)
    assert "expired" in said, said


def test_a_token_for_another_name_is_refused(net: JoinNet) -> None:
    said = refused_join(net, "node-z", make_token(net, "--host", "node-a"))
    assert "for a node named 'node-a'" in said, said


@pytest.mark.lxc
def test_a_desktop_starts_on_a_joined_lxc_node(
    net: JoinNet, run_dir: Path, lxc_storage: Path, test_image: Path
) -> None:
    """The joined node is a real one: an LXC desktop assigned to it starts and stops."""
    node = LxcNode.create(run_dir, lxc_storage, "node-b")
    ns, _ = net.add_namespace(1)
    engine = net.engine()
    proc = None
    try:
        token = make_token(net, "--host", "node-b")
        conf = node.config_file()
        log = net.base / "node-b.log"
        args = ["node", "join", "--token", "-", "--config", str(conf), "--log", "stderr",
                "--address", node.host_address]  # fmt: skip
        proc = net.qvd_in(ns, args, log, stdin=token + "\n")
        wait_running(engine, "node-b", log, proc)
        with engine.connect() as conn:
            host_id = conn.execute(text("SELECT id FROM hosts WHERE name = 'node-b'")).scalar_one()
        vm_id, _ = add_lxc_vm(engine, node, test_image, 1)
        command(engine, vm_id, "start", host_id)
        wait_for(lambda: state_of(engine, vm_id) == "running", 180, "the desktop running")
        command(engine, vm_id, "stop")
        wait_for(lambda: state_of(engine, vm_id) == "stopped", 120, "the desktop stopped")
        proc.terminate()
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc is not None:
            end_process(proc, 60)
        engine.dispose()
        node.clean_in_netns(ns)


def test_join_with_a_database_url_registers_and_writes_the_conf(
    db: DatabaseTarget, engine: Engine, tmp_path: Path
) -> None:
    """Without a token: an administrator's own role, the URL given on stdin."""
    conf = tmp_path / "node.conf"
    conf.write_text("vm.hypervisor = lxc\n")
    env = {k: v for k, v in os.environ.items() if k not in ("QVD_CONFIG", "QVD_DATABASE_URL")}

    def join_as_node_u(address: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qvd", "node", "join", "--database", "-", "--name",
             "node-u", "--address", address, "--config", str(conf), "--no-start"],
            input=url_of(db) + "\n", capture_output=True, text=True, env=env, timeout=120,
            check=False,
        )  # fmt: skip

    done = join_as_node_u("10.0.0.7")
    assert done.returncode == 0, done.stderr
    assert host_rows(engine)["node-u"][0] == "10.0.0.7"
    cfg = load_config(conf)
    assert cfg.get("database.user") == db.params["user"]
    assert cfg.get("vm.hypervisor") == "lxc"  # kept
    assert "not started (--no-start)" in done.stderr
    # again, while that node is not running: re-registered, not a second row
    again = join_as_node_u("10.0.0.8")
    assert again.returncode == 0, again.stderr
    assert "re-registered" in again.stderr
    assert host_rows(engine)["node-u"][0] == "10.0.0.8"
