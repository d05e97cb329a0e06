"""Attacks on the slave channel, against a real session: another process on the client
machine finds the client's local slave listener (nxproxy's ``slave=`` port, which NX
carries into the desktop) and sends requests without the slave key, with a wrong one, a
malformed or oversized head; and a request with the key but a share name that climbs
out of ``~/Redirected``. Every one is refused with its reason, nothing more is mounted,
nothing is created outside ``~/Redirected``."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.di.testbed import Xvfb
from tests.e2e.devices import set_vm_property, start_client, wait_until
from tests.e2e.fusenode import Desktop, fuse_node
from tests.e2e.node import Client, L7rNode, in_vm, set_password
from tests.hkd.lxcnode import add_lxc_vm

__all__ = ["fuse_node"]

pytestmark = pytest.mark.timeout(600)


def slave_port_of(client: Client) -> int | None:
    """The port of the client's nxproxy ``slave=`` listener (from its command line)."""
    for pid in client.children():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if found := re.search(r"[,=]slave=(\d+)", argv):
            return int(found.group(1))
    return None


def ask(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new slave connection; the whole answer (the slave closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def put(name: str, auth: str | None) -> bytes:
    lines = [f"PUT /shares/{name} HTTP/1.1"]
    if auth is not None:
        lines.append(f"Authorization: Basic {auth}")
    lines += ["Connection: Upgrade", "Upgrade: qvd:sftp/1.0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def test_unauthenticated_malformed_and_climbing_requests_are_refused(
    engine: Engine, fuse_node: L7rNode, test_image: Path, tmp_path: Path
) -> None:
    lxc, port = fuse_node.lxc, fuse_node.port
    vm_id, _ = add_lxc_vm(engine, lxc, test_image, 1)
    set_vm_property(engine, vm_id, "vma.slave.enable", "1")
    login = set_password(engine, vm_id, "s3cret!")
    (tmp_path / "password").write_text("s3cret!\n")
    share = tmp_path / "share"
    share.mkdir()
    (share / "f.txt").write_text("legit\n")
    xvfb = Xvfb()
    client = start_client(
        tmp_path / "home", display=xvfb.display, port=port, login=login,
        password_file=tmp_path / "password", vm_id=vm_id, settings={"client.share.1": str(share)},
    )  # fmt: skip
    desktop = Desktop(lxc, vm_id)
    try:
        wait_until(desktop.find_user, 120, "the session's nxagent")
        wait_until(
            lambda: desktop.sh("cat ~/Redirected/share/f.txt")[1] == "legit\n", 60,
            "the legitimate share",
        )  # fmt: skip
        slave = slave_port_of(client)
        assert slave is not None, "the client's nxproxy has no slave listener"
        mounts_before = desktop.mounts().count("fuse.sshfs")
        listing_before = desktop.sh("ls -A ~; ls -A ~/Redirected")[1]

        # no key, a wrong key, another scheme: 401 before any route is looked at
        for request in (
            put("evil", None),
            put("evil", "0" * 64),
            put("evil", "")[:-4] + b"\r\nAuthorization: Bearer x\r\n\r\n",
            b"POST /usbip HTTP/1.1\r\nUpgrade: qvd:usbip/1.0\r\n\r\n",
        ):
            answer = ask(slave, request)
            assert status(answer) in (400, 401), answer
        assert status(ask(slave, put("evil", None))) == 401
        assert b"slave key" in ask(slave, put("evil", "wrong"))

        # malformed and oversized heads
        assert status(ask(slave, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")) == 400
        assert (
            status(ask(slave, b"PUT /shares/x HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")) == 431
        )

        # with the session's key (a hostile client): names that climb out of ~/Redirected
        key = in_vm(lxc, vm_id, "cat", "/run/qvd/slave-key").stdout.strip()
        assert len(key) >= 32
        for name in ("..", "..%2F..%2Fetc", "%2E%2E", "..%2f.ssh", "a%00b", "%0Aevil"):
            answer = ask(slave, put(name, key))
            assert status(answer) == 400, (name, answer)

        time.sleep(1)  # anything a refused request would have started has had its time
        assert desktop.mounts().count("fuse.sshfs") == mounts_before
        assert desktop.sh("ls -A ~; ls -A ~/Redirected")[1] == listing_before
        assert in_vm(lxc, vm_id, "ls", "-d", "/etc/evil", "/home/etc").returncode != 0
    finally:
        client.close()
        xvfb.close()
