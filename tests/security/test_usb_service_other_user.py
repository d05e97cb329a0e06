"""Another local user of the desktop tries the VMA's USB/IP attach service (root's, it
hands sockets to vhci-hcd) to attach a device into someone else's session. The socket
is the session user's alone (0600), and even through a socket left open by mistake the
service checks the peer's uid (SO_PEERCRED) and refuses."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.usb import UsbAttachService
from tests.vma.usbfakes import FakeVhci

SESSION_UID = 65534
INTRUDER_UID = 1  # daemon

PROBE = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("refused", e.errno)
else:
    print("answer", s.recv(100).decode().strip())
"""


@pytest.fixture
def service() -> Iterator[UsbAttachService]:
    # a directory every user reaches (as /run/qvd in the desktop): only the socket's own
    # mode and the uid check stand in the way
    run_dir = Path(tempfile.mkdtemp(prefix="qvd-usb-", dir="/tmp"))
    run_dir.chmod(0o755)
    vhci = FakeVhci(run_dir / "sys")
    svc = UsbAttachService(run_dir / "usbip.sock", SESSION_UID, SESSION_UID, vhci)
    try:
        yield svc
    finally:
        svc.close()
        vhci.close()
        shutil.rmtree(run_dir)


def as_intruder(path: Path) -> str:
    done = subprocess.run(
        ["python3", "-c", PROBE, str(path)], user=INTRUDER_UID, group=INTRUDER_UID,
        extra_groups=[], capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    return done.stdout.strip()


def test_the_socket_is_the_session_users_alone(service: UsbAttachService) -> None:
    st = os.stat(service.path)
    assert (st.st_uid, st.st_mode & 0o777) == (SESSION_UID, 0o600)
    assert as_intruder(service.path) == "refused 13"  # EACCES


def test_the_peer_is_checked_even_through_an_open_socket(service: UsbAttachService) -> None:
    service.path.chmod(0o666)  # a mistake elsewhere: the uid check still holds
    assert as_intruder(service.path) == "answer ERR not the session's user"
