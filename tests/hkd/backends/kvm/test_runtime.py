"""Runtime records, pid files and the cpu weight mapping, without QEMU."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qvd.hkd.backends.base import TerminalBackendError
from qvd.hkd.backends.hostfs import write_private
from qvd.hkd.backends.kvm.cgroup import shares_for
from qvd.hkd.backends.kvm.runtime import Runtime, VmRecord, qemu_pid_of
from qvd.hkd.backends.kvm.tap import create_tap


def test_a_record_round_trips() -> None:
    record = VmRecord(overlay="3-9-overlay.qcow2", overlay_persistent=True)
    assert VmRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize(
    "data",
    [b"", b"[]", b"{}", b'{"overlay": "../x", "persistent": false}',
     b'{"overlay": "a", "persistent": "no"}', b'{"overlay": 3, "persistent": true}'],
)  # fmt: skip
def test_a_bad_record_is_no_record(data: bytes) -> None:
    assert VmRecord.from_json(data) is None


def test_a_pid_file_counts_only_for_the_process_started_with_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "qemu.pid"
    assert qemu_pid_of(pidfile) is None  # missing
    for text in ("", "abc", "1", "-5"):
        pidfile.write_text(text)
        assert qemu_pid_of(pidfile) is None
    pidfile.write_text(f"{os.getpid()}\n")  # alive, but started without it
    assert qemu_pid_of(pidfile) is None
    # The child writes its pid file after exec, as QEMU does: before exec its
    # command line is still ours, and a pid file naming it then would not count.
    script = (
        "import os, sys, time; open(sys.argv[2], 'w').write(f'{os.getpid()}\\n'); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", script, "-pidfile", str(pidfile)])
    try:
        deadline = time.monotonic() + 10
        while pidfile.read_text().strip() != str(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert qemu_pid_of(pidfile) == child.pid
        other = tmp_path / "other.pid"
        other.write_text(f"{child.pid}\n")
        assert qemu_pid_of(other) is None  # another VM's pid file naming this PID
    except BaseException:
        child.kill()
        child.wait()
        raise
    child.kill()
    deadline = time.monotonic() + 10
    while qemu_pid_of(pidfile) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert qemu_pid_of(pidfile) is None  # a zombie (or a dead process) is no QEMU
    child.wait()
    assert qemu_pid_of(pidfile) is None


def test_private_files_replace_links(tmp_path: Path) -> None:
    runtime = Runtime(tmp_path / "kvm")
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    runtime.dir(5).mkdir(parents=True)
    runtime.identity(5).symlink_to(target)
    write_private(runtime.identity(5), b"{}")
    assert target.read_text() == "keep"
    assert not runtime.identity(5).is_symlink()
    assert runtime.identity(5).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("weight", "shares"), [(100, 1024), (1, 10), (10000, 102400), (250, 2560)])
def test_weight_to_shares(weight: int, shares: int) -> None:
    assert shares_for(weight) == shares


@pytest.mark.parametrize("name", ["", "a b", "x" * 16, "../../etc", "a;b"])
def test_a_tap_name_that_is_no_interface_name_is_refused(name: str) -> None:
    with pytest.raises(TerminalBackendError, match="not an interface name"):
        create_tap(name, "qvdnet")
