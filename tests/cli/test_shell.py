"""The real ``qa`` program in interactive mode against the API served over TLS:
commands piped on standard input, and a pseudo-terminal for what only happens with a
person at the keyboard (confirmations, hidden passwords, paging)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session

from qvd.db.models import ApiSession, AuditLog, Vm
from tests.api.conftest import PASSWORD
from tests.cli.conftest import LiveApi

TIMEOUT = 30.0


def _qa_argv() -> list[str]:
    script = Path(sys.executable).with_name("qa")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "qvd.cli"]


def _env(conf: Path, home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "QA_CONFIG": str(conf),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
    }


def piped(
    live_api: LiveApi, conf: Path, lines: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_qa_argv(), *args],
        input=lines,
        capture_output=True,
        text=True,
        env=_env(conf, live_api.folder),
        timeout=TIMEOUT * 2,
        check=False,
    )


def _sessions(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(sql_select(func.count()).select_from(ApiSession)) or 0


def _logins(engine: Engine) -> int:
    with Session(engine) as session:
        query = sql_select(func.count()).where(AuditLog.action == "login", AuditLog.status == 0)
        return session.scalar(query.select_from(AuditLog)) or 0


def _vm_names(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.scalars(sql_select(Vm.name)))


class PtyQa:
    """``qa`` on a pseudo-terminal: ``expect`` reads until a text shows up, ``send``
    types a line. The child has no controlling terminal, so getpass turns the echo off
    on standard input (the pseudo-terminal)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.master = master
        self.pending = b""
        self.seen = b""

    def expect(self, text: str, timeout: float = TIMEOUT) -> str:
        """Everything up to and including ``text``."""
        wanted = text.encode()
        deadline = time.monotonic() + timeout
        while wanted not in self.pending:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(left, 0))
            chunk = b""
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the child has gone
                    chunk = b""
            if not chunk:
                raise AssertionError(f"no {text!r} from qa; it wrote {self.pending!r}")
            self.pending += chunk
        end = self.pending.index(wanted) + len(wanted)
        got, self.pending = self.pending[:end], self.pending[end:]
        self.seen += got
        return got.decode(errors="replace").replace("\r\n", "\n")

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self) -> int:
        try:
            code = self.proc.wait(TIMEOUT)
        finally:
            with_rest = b""
            try:
                while select.select([self.master], [], [], 0.1)[0]:
                    data = os.read(self.master, 65536)
                    if not data:
                        break
                    with_rest += data
            except OSError:
                pass
            self.seen += self.pending + with_rest
            os.close(self.master)
        return code


StartQa = Callable[..., PtyQa]


@pytest.fixture
def pty_qa(live_api: LiveApi) -> Iterator[StartQa]:
    started: list[PtyQa] = []

    def start(conf: Path, *args: str) -> PtyQa:
        term = PtyQa([*_qa_argv(), *args], _env(conf, live_api.folder))
        started.append(term)
        return term

    yield start
    for term in started:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait(TIMEOUT)


# piped -----------------------------------------------------------------------------------


def test_piped_commands_run_in_one_session(live_api: LiveApi, api_engine: Engine) -> None:
    conf = live_api.qa_conf(format="csv")
    lines = "vm get name\nvm frobnicate\nuser get name\nversion\nhost name=nope start\n"
    result = piped(live_api, conf, lines)
    assert result.stdout.startswith("name\nvmA\nvmB\nname\nusera\nuserb\nqa (QVD admin CLI) ")
    assert "API: database schema " in result.stdout
    assert "qa: no verb found (the verbs of vm: get, new" in result.stderr
    assert "'start' is not a verb of host" in result.stderr
    assert result.returncode == 2  # the last failure's status
    assert _sessions(api_engine) == 0  # logged out at the end of the input
    assert _logins(api_engine) == 1  # one login for the whole session


def test_piped_input_never_waits_for_a_confirmation(live_api: LiveApi, api_engine: Engine) -> None:
    conf = live_api.qa_conf()
    result = piped(live_api, conf, "vm del\nvm name=vmA del\n")
    assert result.returncode == 1
    assert result.stderr.count("needs a confirmation, but standard input is not a terminal") == 2
    assert _vm_names(api_engine) == ["vmA", "vmB"]
    result = piped(live_api, conf, "vm name=vmA del\n", "--force")
    assert result.returncode == 0, result.stderr
    assert _vm_names(api_engine) == ["vmB"]
    result = piped(live_api, live_api.qa_conf(force="1"), "vm del\n")
    assert result.returncode == 0, result.stderr
    assert _vm_names(api_engine) == []


def test_piped_one_shot_and_usage(live_api: LiveApi) -> None:
    conf = live_api.qa_conf(format="csv")
    result = piped(live_api, conf, "", "vm", "vmB", "get", "name,", "user")
    assert (result.returncode, result.stdout) == (0, "name,user_name\nvmB,userb\n")
    result = piped(live_api, conf, "usage vm start\nusage password\n")
    assert result.returncode == 0
    assert result.stdout.startswith("qa vm [<filters>] start: ")
    assert "password: change your own password" in result.stdout
    result = piped(live_api, conf, "", "login")
    assert result.returncode == 2
    assert "interactive mode" in result.stderr


# on a terminal ---------------------------------------------------------------------------


def test_confirmations_on_a_terminal(
    live_api: LiveApi, api_engine: Engine, pty_qa: StartQa
) -> None:
    term = pty_qa(live_api.qa_conf())
    assert "QVD administration on https://" in term.expect("qa> ")
    term.send("vm del")
    term.expect("Delete 2 VMs? [y/N] ")
    term.send("n")
    assert "qa: nothing done" in term.expect("qa> ")
    assert _vm_names(api_engine) == ["vmA", "vmB"]
    term.send("vm vmA del")
    term.expect("Delete 1 VM? [y/N] ")
    term.send("y")
    assert "Successful completion" in term.expect("qa> ")
    assert _vm_names(api_engine) == ["vmB"]
    term.send("vm block")
    term.expect("Block 1 VM? [y/N] ")
    term.send("yes")
    term.expect("qa> ")
    term.send("vm get name, blocked")
    assert "| vmB  | 1       |" in term.expect("qa> ")
    term.send("vm del --force")
    assert "Successful completion" in term.expect("qa> ")
    assert _vm_names(api_engine) == []
    term.send("quit")
    assert term.finish() == 1  # the declined 'vm del' is the last failure
    assert _sessions(api_engine) == 0


def test_passwords_are_asked_hidden(live_api: LiveApi, api_engine: Engine, pty_qa: StartQa) -> None:
    term = pty_qa(live_api.qa_conf(password=None))
    term.expect("qa> ")
    term.send("vm get name")
    term.expect("Password for root: ")
    term.send(PASSWORD)
    assert "| vmA  |" in term.expect("qa> ")
    term.send("password")
    term.expect("Current password: ")
    term.send(PASSWORD)
    term.expect("New password: ")
    term.send("first-new-pw")
    term.expect("New password again: ")
    term.send("first-new-pw")
    assert "Password changed" in term.expect("qa> ")
    term.send("logout")
    assert "Logged out" in term.expect("qa> ")
    assert _sessions(api_engine) == 0
    term.send("user get name")  # logged out: the password is asked again
    term.expect("Password for root: ")
    term.send("nOt-iT-42")
    assert "qa: error 3200" in term.expect("qa> ")  # reported; the session goes on
    term.send("user get name")  # a wrong password is not tried again: asked again
    term.expect("Password for root: ")
    term.send("first-new-pw")
    assert "| usera |" in term.expect("qa> ")
    term.send("login root *")
    term.expect("Password for root: ")
    term.send("first-new-pw")
    assert "Logged in as root (tenant *)" in term.expect("qa> ")
    term.send("login")
    term.expect("Login: ")
    term.send("adminA")
    term.expect("Tenant: ")
    term.send("tenantA")
    term.expect("Password for adminA: ")
    term.send(PASSWORD)
    assert "Logged in as adminA (tenant tenantA)" in term.expect("qa> ")
    term.send("vm get name")
    listing = term.expect("qa> ")
    assert "vmA" in listing
    assert "vmB" not in listing
    term.send("exit")
    assert term.finish() == 1  # the wrong password is the last failure
    assert b"first-new-pw" not in term.seen  # never echoed
    assert PASSWORD.encode() not in term.seen
    assert b"nOt-iT-42" not in term.seen


def test_pages_on_a_terminal(live_api: LiveApi, pty_qa: StartQa) -> None:
    term = pty_qa(live_api.qa_conf())
    term.expect("qa> ")
    term.send("block 1")
    assert "Page size: 1" in term.expect("qa> ")
    term.send("vm get name order name")
    first = term.expect("-- Enter: next page, q: stop -- ")
    assert "vmA" in first
    assert "Total: 2 (page 1 of 2: rows 1-1)" in first
    term.send("")
    second = term.expect("qa> ")
    assert "vmB" in second
    assert "Total: 2 (page 2 of 2: rows 2-2)" in second
    term.send("vm get name order name")
    term.expect("-- Enter: next page, q: stop -- ")
    term.send("q")
    assert "vmB" not in term.expect("qa> ")
    term.send("frobnicate")
    assert "unknown object or command 'frobnicate'" in term.expect("qa> ")
    os.write(term.master, b"\x04")  # end of input (Ctrl-D) leaves
    assert term.finish() == 2
