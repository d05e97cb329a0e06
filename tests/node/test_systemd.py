"""The node under systemd, without systemd (this machine's PID 1 is not systemd): the
rendered units pass ``systemd-analyze verify``; the real ``qvd hkd`` and ``qvd api``
processes say READY=1 / STOPPING=1 on a notify socket of ours (a path, and an abstract
``@name``); their logs reach a journal socket of ours as structured entries."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.node.journal import encode_entry, stderr_is_journal
from qvd.node.sdnotify import Notifier, socket_address
from qvd.node.units import UNIT_NAMES
from tests.conftest import end_process, free_port, scratch_dir
from tests.hkd.conftest import add_host, host_state
from tests.node.test_cli import url_of

pytestmark = pytest.mark.timeout(300)


# ---- units ------------------------------------------------------------------------------
def _verify(unit_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in unit_dir.iterdir())],
        capture_output=True, text=True, check=False, timeout=60, cwd=unit_dir,
    )  # fmt: skip


def test_rendered_units_verify_clean(tmp_path: Path) -> None:
    conf = tmp_path / "node.conf"
    conf.write_text("nodename = n1\n")
    out = tmp_path / "units"
    done = subprocess.run(
        [sys.executable, "-m", "qvd", "node", "units", "--output", str(out), "--config",
         str(conf)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(UNIT_NAMES)
    verified = _verify(out)
    # systemd-analyze exits 0 on unknown keys and bad values: its words are the verdict
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout + verified.stderr == "", verified.stdout + verified.stderr
    hkd = (out / "qvd-hkd.service").read_text()
    assert "Type=notify" in hkd
    assert "Restart=on-failure" in hkd
    assert "After=network-online.target qvd-postgresql.service" in hkd
    assert f"--config {conf.resolve()}" in hkd
    assert "@" not in hkd.split("[Service]")[1].replace("# ", "")  # every placeholder filled
    api = (out / "qvd-api.service").read_text()
    assert "ProtectSystem=strict" in api
    assert "NoNewPrivileges=yes" in api
    pg = (out / "qvd-postgresql.service").read_text()
    assert "Before=qvd-hkd.service qvd-api.service" in pg


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above means something: a unit with a bad value is reported."""
    out = tmp_path / "units"
    subprocess.run(
        [sys.executable, "-m", "qvd", "node", "units", "--output", str(out), "--unit",
         "qvd-hkd.service", "--config", str(tmp_path / "none.conf")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    unit = out / "qvd-hkd.service"
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"))
    verified = _verify(out)
    assert "notifyy" in verified.stdout + verified.stderr


def test_a_path_with_blanks_is_refused_in_a_unit(tmp_path: Path) -> None:
    conf = tmp_path / "a b.conf"
    conf.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "qvd", "node", "units", "--output", str(tmp_path / "u"),
         "--config", str(conf)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "cannot go into a unit file" in done.stderr


# ---- sd_notify ------------------------------------------------------------------------------
class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, directory: Path, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"qvd-test-notify-{secrets.token_hex(6)}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = directory / "notify.sock"
            self.sock.bind(str(path))
            self.env = str(path)
        self.messages: list[dict[str, str]] = []

    def wait_for(
        self, key: str, timeout: float, proc: subprocess.Popen[bytes] | None = None
    ) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if key in message:
                    return message
            if proc is not None and proc.poll() is not None and not self._read(0.1):
                raise AssertionError(f"the process ended before {key}")
            self._read(0.2)
        raise AssertionError(f"no {key} within {timeout} s: {self.messages}")

    def _read(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
        return True

    def close(self) -> None:
        self.sock.close()


def test_notifier_addresses_and_no_socket() -> None:
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("/run/x.sock") == "/run/x.sock"
    assert socket_address("relative") is None
    assert Notifier(None).ready() is False  # not under systemd: nothing, no error


def _hkd_conf(run: Path, name: str, l7r_port: int) -> Path:
    conf = run / f"{name}.conf"
    conf.write_text(
        f"nodename = {name}\nvm.hypervisor = fake\nvm.network.bridge.manage = 0\n"
        f"path.run = {run / name}\npath.storage.root = {run / name / 'storage'}\n"
        f"internal.hkd.watchdog.enable = 0\nl7r.port = {l7r_port}\nl7r.portal.enable = 0\n"
        "vm.network.ip.start = 10.231.0.100\nvm.network.netmask = 16\n"
    )
    return conf


def _start(argv: list[str], db: DatabaseTarget, log: Path, **env: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "QVD_DATABASE_URL": url_of(db), **env}
    full.pop("QVD_CONFIG", None)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "qvd", *argv], stdout=out, stderr=subprocess.STDOUT, env=full
        )


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = scratch_dir(f"qvd-test-systemd-{os.getpid()}-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        end_process(p, 60)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_hkd_says_ready_once_registered_and_listening_then_stopping(
    db: DatabaseTarget, engine: Engine, run_dir: Path, procs: list[subprocess.Popen[bytes]],
    abstract: bool,
) -> None:  # fmt: skip
    host = add_host(engine, "n1", "10.231.0.2")
    port = free_port()
    notify = NotifySocket(run_dir, abstract)
    try:
        proc = _start(["hkd", "--config", str(_hkd_conf(run_dir, "n1", port))], db,
                      run_dir / "hkd.log", NOTIFY_SOCKET=notify.env,
                      WATCHDOG_USEC="400000")  # fmt: skip
        procs.append(proc)
        ready = notify.wait_for("READY", 90, proc)
        # ready means: registered (running in the database) and the L7R accepts
        assert host_state(engine, host.id) == "running"
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
        assert "n1" in ready.get("STATUS", "")
        notify.wait_for("WATCHDOG", 30, proc)  # WatchdogSec=0.4s: pinged every 0.2 s
        proc.terminate()
        notify.wait_for("STOPPING", 60)
        assert proc.wait(60) == 0, (run_dir / "hkd.log").read_text()
    finally:
        notify.close()


def test_api_says_ready_when_it_serves(
    db: DatabaseTarget,
    run_dir: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    conf = run_dir / "api.conf"
    conf.write_text(
        f"api.port = {port}\npath.api.ssl.cert = {run_dir / 'api' / 'cert.pem'}\n"
        f"path.api.ssl.key = {run_dir / 'api' / 'key.pem'}\npath.run = {run_dir / 'run'}\n"
    )
    notify = NotifySocket(run_dir, abstract=True)
    try:
        proc = _start(["api", "--config", str(conf)], db, run_dir / "api.log",
                      NOTIFY_SOCKET=notify.env)  # fmt: skip
        procs.append(proc)
        notify.wait_for("READY", 90, proc)
        ctx = ssl.create_default_context(cafile=str(run_dir / "api" / "cert.pem"))
        ctx.check_hostname = False
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with ctx.wrap_socket(raw) as tls:  # it serves: the TLS handshake completes
            tls.sendall(b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 ")
        proc.terminate()
        notify.wait_for("STOPPING", 60)
        assert proc.wait(60) == 0, (run_dir / "api.log").read_text()
    finally:
        notify.close()


# ---- journald ------------------------------------------------------------------------------
def decode_entry(data: bytes) -> dict[str, str]:
    """The native protocol, read back (KEY=value lines, or KEY + length + bytes)."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(data):
        end = data.index(b"\n", i)
        line = data[i:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            fields[key.decode()] = value.decode()
            i = end + 1
        else:
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            fields[line.decode()] = data[end + 9 : end + 9 + size].decode()
            i = end + 9 + size + 1
    return fields


def test_entry_encoding_round_trips_line_breaks() -> None:
    fields = {"MESSAGE": "two\nlines", "PRIORITY": "6", "QVD_VM_ID": "12"}
    assert decode_entry(encode_entry(fields)) == fields
    with pytest.raises(ValueError, match="field name"):
        encode_entry({"_PID": "1"})  # journald's own fields cannot be forged


def test_journal_stream_is_recognised(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as f:
        st = os.fstat(f.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, f.fileno())
        assert not stderr_is_journal({}, f.fileno())


def test_hkd_logs_structured_entries_when_stderr_is_the_journal(
    db: DatabaseTarget, engine: Engine, run_dir: Path, procs: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    host = add_host(engine, "n1", "10.231.0.2")
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = run_dir / "journal.sock"
    journal.bind(str(path))
    log = run_dir / "hkd.log"
    log.touch()
    st = log.stat()  # the child's stderr is this file: JOURNAL_STREAM names it, as systemd does
    try:
        proc = _start(
            ["hkd", "--config", str(_hkd_conf(run_dir, "n1", free_port())),
             "--journal-socket", str(path)],
            db, log, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}",
        )  # fmt: skip
        procs.append(proc)
        entries: list[dict[str, str]] = []
        deadline = time.monotonic() + 90
        journal.settimeout(1)
        while time.monotonic() < deadline and not any(
            e.get("MESSAGE", "").endswith("node n1 ready") for e in entries
        ):
            try:
                entries.append(decode_entry(journal.recv(1 << 16)))
            except TimeoutError:
                assert proc.poll() is None, log.read_text()
        ready = [e for e in entries if e.get("MESSAGE", "").endswith("node n1 ready")]
        assert ready, entries
        entry = ready[0]
        assert entry["PRIORITY"] == "6"  # info
        assert entry["SYSLOG_IDENTIFIER"] == "qvd-hkd"
        assert entry["QVD_HOST"] == "n1"
        assert entry["QVD_HOST_ID"] == str(host.id)
        assert entry["QVD_LOGGER"] == "qvd.node"
        assert entry["CODE_FILE"].endswith("service.py")
        assert any("HKD running as host" in e["MESSAGE"] for e in entries)
        # the plain lines stayed off stderr: the journal has them
        assert " INFO " not in log.read_text()
    finally:
        journal.close()
