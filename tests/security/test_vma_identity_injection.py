"""A hostile fw_cfg identity (whoever can hand the guest a blob: a misconfigured or
compromised hypervisor side, or a stale file) tries to rename the desktop with control
characters and to get a secret of its choosing accepted. The real VMA process, in a
UTS namespace of its own, refuses the whole identity: it keeps running, answers every
call with 401 (also with the image's baked-in secret: no fallback), logs why and never
sets the host name. A good identity, for contrast, is used."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from qvd.vma.client import VmaAuthError, VmaClient, VmaError
from tests.conftest import free_port

FW_SECRET = "a1" * 32
IMAGE_SECRET = "image-baked-secret-0123456789"


@contextmanager
def vma_process(tmp_path: Path, identity: dict[str, object]) -> Iterator[tuple[int, int, Path]]:
    """The real VMA (``serve``) on loopback in its own UTS namespace; (pid, port, log)."""
    if os.geteuid() != 0:
        pytest.fail("a UTS namespace needs root")
    raw = tmp_path / "qemu_fw_cfg/by_name/opt/org.qvd/identity/raw"
    raw.parent.mkdir(parents=True)
    raw.write_text(json.dumps(identity))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/vma.secret").write_text(IMAGE_SECRET + "\n")
    port = free_port()
    conf = tmp_path / "vma.conf"
    conf.write_text(
        f"vma.address = 127.0.0.1\ninternal.vm.port.vma = {port}\n"
        f"path.run = {tmp_path}/run\npath.log = {tmp_path}/log\n"
        f"vma.identity.fw_cfg = {raw}\nvma.identity.secret.file = {tmp_path}/run/vma.secret\n"
        f"vma.secret.file = {tmp_path}/etc/vma.secret\n"
    )
    code = (
        "import sys; from pathlib import Path; from qvd.vma.main import serve; "
        f"sys.exit(serve(Path({str(conf)!r})))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        ["unshare", "--uts", "--", sys.executable, "-c", code],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        try:
            probe = VmaClient("127.0.0.1", port=port, secret="x", timeout=1)
            end = time.monotonic() + 30
            while True:
                try:
                    probe.ping()
                except VmaAuthError:
                    break  # it answers
                except VmaError:
                    if time.monotonic() > end or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
            yield proc.pid, port, tmp_path / "log/vma.log"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def hostname_of(pid: int) -> str:
    done = subprocess.run(
        ["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def identity(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "version": 1, "vm_id": 10001, "hostname": "desk-ok", "vma_secret": FW_SECRET,
        "home_serial": None,
    }  # fmt: skip
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "hostile",
    [
        identity(hostname="desk\nlxc.hook.pre-start=/tmp/x"),
        identity(hostname="desk\x1b]0;owned\x07"),
        identity(vm_id="10001; rm -rf /"),
        identity(vma_secret=FW_SECRET, extra=True),
    ],
    ids=["newline-hostname", "escape-hostname", "string-vm-id", "unknown-key"],
)
def test_a_hostile_identity_is_refused_whole(tmp_path: Path, hostile: dict[str, object]) -> None:
    with vma_process(tmp_path, hostile) as (pid, port, log):
        for secret in (FW_SECRET, IMAGE_SECRET):
            with pytest.raises(VmaAuthError) as refused:
                VmaClient("127.0.0.1", port=port, secret=secret, timeout=5).ping()
            assert refused.value.status == 401
        assert hostname_of(pid) == socket.gethostname()  # untouched
        text = log.read_text()
    assert "identity from fw_cfg refused" in text
    assert "every call will be refused" in text
    assert FW_SECRET not in text
    assert not (tmp_path / "run/vma.secret").exists()


def test_a_good_identity_is_used(tmp_path: Path) -> None:
    with vma_process(tmp_path, identity()) as (pid, port, log):
        assert VmaClient("127.0.0.1", port=port, secret=FW_SECRET, timeout=5).ping() is None
        with pytest.raises(VmaAuthError):
            VmaClient("127.0.0.1", port=port, secret=IMAGE_SECRET, timeout=5).ping()
        assert hostname_of(pid) == "desk-ok"
        assert "identity: fw_cfg (vm 10001, host name desk-ok" in log.read_text()
