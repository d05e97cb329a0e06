"""`qvd up` brings up a private PostgreSQL with the schema, a node and the demo desktop,
whose printed client command shows the desktop on a display; it stops cleanly."""

from __future__ import annotations

import os
import queue
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from qvd.config import load_config
from qvd.db import embedded_cluster, verify_password
from qvd.db.seed_acls import ALL_ACLS
from qvd.di.screenshot import take_screenshot
from qvd.di.testbed import Xvfb
from qvd.hkd.network import NodeNetwork
from tests.conftest import free_port, scratch_dir
from tests.hkd.lxcnode import free_subnet
from tests.vma.helpers import wait_for_xterm, xterm_visible

# Starts LXC containers (the demo desktop) and builds the `test` image on a new machine.
pytestmark = pytest.mark.lxc

READY = "QVD node is up."


@pytest.fixture
def node_conf() -> Iterator[Path]:
    base = scratch_dir(f"qvd-test-up-{os.getpid()}-")
    subnet = free_subnet()
    conf = base / "node.conf"
    conf.write_text(
        f"nodename = test-node\n"
        f"path.run = {base}/run\n"
        f"path.data = {base}/data\n"
        f"path.log = {base}/log\n"
        f"path.storage.root = {base}/storage\n"
        f"database.embedded.port = {free_port()}\n"
        f"l7r.port = {free_port()}\n"
        f"l7r.portal.port = {free_port()}\n"
        f"api.port = {free_port()}\n"
        f"path.api.ssl.cert = {base}/api/cert.pem\n"
        f"path.api.ssl.key = {base}/api/key.pem\n"
        # the suite's own small image (built once per machine, then cached)
        f"node.demo.recipe = test\n"
        f"vm.network.bridge = qvdu{secrets.token_hex(3)}\n"
        f"vm.network.ip.start = {subnet.network_address + 100}\n"
        f"vm.network.netmask = {subnet.prefixlen}\n"
    )
    if os.environ.get("QVD_TEST_DI_CACHE"):  # a separate image cache (default path.cache.di)
        with conf.open("a") as fh:
            fh.write(f"path.cache.di = {os.environ['QVD_TEST_DI_CACHE']}\n")
    try:
        yield conf
    finally:
        config = load_config(conf)
        embedded_cluster(config).stop()
        NodeNetwork(
            bridge=config.get("vm.network.bridge"),
            host_address=str(subnet.network_address + 1),
            network=subnet,
            ip_start=subnet.network_address + 100,
            vma_port=3030,
            x_port=4100,
        ).remove(guard=True)
        shutil.rmtree(base, ignore_errors=True)


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _end_started_processes() -> Iterator[None]:
    """Whatever a test asserts, no `qvd up` it started outlives it."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        elif proc.stdout is not None:
            proc.stdout.close()


def start_up(conf: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"QVD_CONFIG", "QVD_DATABASE_URL"}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qvd", "up", "--config", str(conf)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    _started.append(proc)
    return proc


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 90) -> list[str]:
    """Lines of output up to and including the one with ``marker``."""
    assert proc.stdout is not None
    stream = proc.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
            if marker in line:
                return
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if marker in line:
            return seen
    proc.kill()
    raise AssertionError(f"{marker!r} never came; output:\n" + "\n".join(seen))


def see_the_desktop(client_line: str, home: Path, output: Path) -> None:
    """Run the printed client command on a fresh display, as a newcomer does, and wait
    for the demo desktop (the `test` image's xterm) to be drawn on it."""
    display = Xvfb()
    env = {**os.environ, "DISPLAY": display.display, "HOME": str(home)}
    client = subprocess.Popen(
        shlex.split(client_line), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        shot = wait_for_xterm(display.display, 180)
        shot.save_png(output / "qvd-up-desktop.png")
        if not xterm_visible(shot):
            os.killpg(client.pid, signal.SIGTERM)
            out, _ = client.communicate(timeout=30)
            raise AssertionError(f"no desktop on the client's display; client said:\n{out}")
        assert client.poll() is None  # the session is live
        os.killpg(client.pid, signal.SIGTERM)
        client.communicate(timeout=30)
        assert not xterm_visible(take_screenshot(display.display))  # its window is gone
    finally:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
            client.communicate()
        display.close()


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


@pytest.mark.timeout(900)  # the first run on a new machine builds the test image
def test_up_creates_runs_and_stops_the_database(
    node_conf: Path, tmp_path: Path, evidence_dir: Path
) -> None:
    config = load_config(node_conf)
    cluster = embedded_cluster(config)
    proc = start_up(node_conf)
    try:
        lines = read_until(proc, "Stop with Ctrl-C", timeout=840)
    except BaseException:
        proc.kill()
        raise
    text = "\n".join(lines)
    assert "created a new cluster" in text
    assert READY in text
    bridge = config.get("vm.network.bridge")
    assert f"VMs on bridge {bridge} (lxc)" in text
    assert "egress:   off" in text  # and how to turn it on:
    assert "`vm.network.egress.enable = 1` and `vm.network.egress.uplink = <interface>`" in text
    port = config.get_int("l7r.port")
    assert f"L7R:      TLS on port {port}" in text
    portal_port = config.get_int("l7r.portal.port")
    assert f"Portal:   https://127.0.0.1:{portal_port}/ (desktops in the browser)" in text
    client_line = next(line for line in lines if "qvd-client --host" in line).strip()
    api_port = config.get_int("api.port")
    assert f"  WAT:      https://127.0.0.1:{api_port}/ " in text
    assert f"  API:      https://127.0.0.1:{api_port}/api " in text
    trust = ssl.create_default_context(cafile=str(config.get_path("path.api.ssl.cert")))
    info = httpx.post(f"https://127.0.0.1:{api_port}/api/info", json={}, verify=trust, timeout=10)
    assert info.status_code == 200
    assert info.json()["status"] == 0
    wat = httpx.get(f"https://127.0.0.1:{api_port}/", verify=trust, timeout=10)
    assert wat.status_code == 303
    assert wat.headers["location"] == "/login"
    login_page = httpx.get(f"https://127.0.0.1:{api_port}/login", verify=trust, timeout=10)
    assert 'id="login-form"' in login_page.text
    assert f"qvd-client --host 127.0.0.1 --port {port} --user demo " in client_line
    assert Path(client_line.split()[0]).name == "qvd-client"
    assert _link_exists(bridge)
    image_line = next(line for line in lines if line.startswith("  demo disk image: "))
    assert Path(image_line.split(": ", 1)[1]).name.startswith("test-")
    assert Path(image_line.split(": ", 1)[1]).is_file()
    password = lines[lines.index("  superadmin (tenant '*') password, shown this once:") + 1]
    password = password.strip()

    # the database answers on its socket, with schema and seed, and the password works
    with psycopg.connect(host=str(cluster.socket_dir), port=cluster.port, user="qvd",
                         dbname="qvd") as conn:  # fmt: skip
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0009",)
        stored = conn.execute(
            "SELECT password FROM administrators WHERE name = 'superadmin'"
        ).fetchone()
        assert stored is not None
        assert verify_password(stored[0], password)
    # and on loopback TCP with the generated role password
    role_password = cluster.password_file.read_text().strip()
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user="qvd", dbname="qvd",
                         password=role_password) as conn:  # fmt: skip
        assert conn.execute("SELECT count(*) FROM acls").fetchone() == (len(ALL_ACLS),)
        host = conn.execute(
            "SELECT h.address, r.state FROM hosts h JOIN host_runtimes r ON r.host_id = h.id "
            "WHERE h.name = 'test-node'"
        ).fetchone()
        assert host is not None
        assert host[1] == "running"
        demo = conn.execute(
            "SELECT r.state, array_agg(t.tag ORDER BY t.tag) FROM osfs o "
            "JOIN dis d ON d.osf_id = o.id JOIN di_runtimes r ON r.di_id = d.id "
            "JOIN di_tags t ON t.di_id = d.id WHERE o.name = 'demo' GROUP BY r.state"
        ).fetchone()
        assert demo is not None
        assert demo[0] == "published"
        assert {"default", "head"} <= set(demo[1])

    # the printed command shows the demo desktop, and the database saw the user connect
    see_the_desktop(client_line, tmp_path / "home", evidence_dir)
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user="qvd", dbname="qvd",
                         password=role_password) as conn:  # fmt: skip
        vm = conn.execute(
            "SELECT r.vm_state, c.run_ok FROM vms v JOIN vm_runtimes r ON r.vm_id = v.id "
            "JOIN vm_counters c ON c.vm_id = v.id WHERE v.name = 'demo-desktop'"
        ).fetchone()
    assert vm == ("running", 1)

    # a second `qvd up` on the same node refuses
    second = start_up(node_conf)
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 1
    assert f"another `qvd up` (pid {proc.pid}) is running this node" in out

    code, out = stop(proc)
    assert code == 0, out
    assert "admin API stopped" in out
    assert "node daemon stopped" in out
    assert "embedded PostgreSQL stopped" in out
    assert not cluster.is_running()
    assert not _link_exists(bridge)
    assert not (cluster.socket_dir / f".s.PGSQL.{cluster.port}").exists()

    # again: the same cluster is reused, no new password is shown
    proc = start_up(node_conf)
    try:
        lines = read_until(proc, "Stop with Ctrl-C")
    finally:
        code, out = stop(proc)
    text = "\n".join(lines)
    assert "created a new cluster" not in text
    assert "shown this once" not in text
    assert code == 0
    assert not cluster.is_running()
