"""``qvd-vma-slave`` run for real, as nxagent runs it: a subprocess with the channel (one
end of a socketpair) on its stdin and stdout and the slave key in a 0600 file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from qvd.vma.shares import fuse_mounts_below
from qvd.vma.slave import VHCI_DIR, mount_point, sshfs_argv

KEY = "Zq8" * 21 + "x"  # 64 characters of [A-Za-z0-9], like the L7R's


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "slave-key"
    path.write_text(KEY)
    path.chmod(0o600)
    return path


def run_slave(
    request: bytes, key_file: Path | None, home: Path, *, close_after: bool = True
) -> tuple[bytes, int]:
    """What the slave answered to ``request``, and its exit status."""
    ours, theirs = socket.socketpair()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "HOME": str(home)}  # fmt: skip
    if key_file is not None:
        env["QVD_SLAVE_KEY_FILE"] = str(key_file)
    with ours:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qvd.vma.slave"], stdin=theirs, stdout=theirs,
            stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        theirs.close()
        ours.sendall(request)
        if close_after:
            ours.shutdown(socket.SHUT_WR)
        ours.settimeout(30)
        answer = b""
        while chunk := ours.recv(65536):
            answer += chunk
        proc.wait(30)
        assert proc.stderr is not None
        errors = proc.stderr.read().decode()
        proc.stderr.close()
    assert "Traceback" not in errors, errors
    return answer, proc.returncode


def req(target: str = "/shares/docs", *, auth: str = KEY, method: str = "PUT",
        upgrade: str = "qvd:sftp/1.0") -> bytes:  # fmt: skip
    return (
        f"{method} {target} HTTP/1.1\r\nAuthorization: Basic {auth}\r\n"
        f"Connection: Upgrade\r\nUpgrade: {upgrade}\r\n\r\n"
    ).encode()


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body(answer: bytes) -> str:
    return answer.partition(b"\r\n\r\n")[2].decode()


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (req(auth="wrong"), 401, "slave key"),
        (b"PUT /shares/docs HTTP/1.1\r\nUpgrade: qvd:sftp/1.0\r\n\r\n", 401, "slave key"),
        (b"GARBAGE\r\n\r\n", 400, "request line"),
        (b"PUT /shares/docs HTTP/1.1\r\n", 400, "closed"),  # the head never ends
        (b"PUT /x HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431, "longer than"),
        (req("/open/abc"), 404, "no such route"),
        (req("/shares/docs", method="GET"), 405, "PUT"),
        (req("/shares/..%2F..%2Fetc"), 400, "no '/'"),
        (req("/shares/.."), 400, "plain directory name"),
        (req("/shares/docs", upgrade="websocket"), 400, "qvd:sftp/1.0"),
    ],
)
def test_refusals_come_back_as_http_with_the_reason(
    request_: bytes, code: int, reason: str, key_file: Path, tmp_path: Path
) -> None:
    answer, exit_status = run_slave(request_, key_file, tmp_path)
    assert status(answer) == code
    assert reason in body(answer)
    assert exit_status == 1
    assert not (tmp_path / "Redirected").exists()  # nothing made for a refused request


def test_without_a_key_file_every_request_is_refused(tmp_path: Path) -> None:
    answer, _ = run_slave(req(), None, tmp_path)
    assert status(answer) == 401
    answer, _ = run_slave(req(auth=""), tmp_path / "missing", tmp_path)
    assert status(answer) == 401


@pytest.mark.skipif(VHCI_DIR.exists(), reason="vhci-hcd is loaded on this machine")
def test_usbip_without_vhci_hcd_is_a_clean_503(key_file: Path, tmp_path: Path) -> None:
    answer, _ = run_slave(req("/usbip", method="POST", upgrade="qvd:usbip/1.0"), key_file, tmp_path)
    assert status(answer) == 503
    assert body(answer) == (
        "USB/IP is not available in this desktop: the vhci-hcd kernel module is not loaded\n"
    )


def test_a_share_that_cannot_mount_says_why(key_file: Path, tmp_path: Path) -> None:
    """On this machine (no sshfs, or no /dev/fuse access) the share is refused with 503
    and its reason; where sshfs exists the tests/e2e session covers the mount."""
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
        fuse = True
    except OSError:
        fuse = False
    if fuse and subprocess.run(["sh", "-c", "command -v sshfs"], check=False).returncode == 0:
        pytest.skip("sshfs and /dev/fuse are here: the e2e test mounts for real")
    answer, _ = run_slave(req("/shares/docs"), key_file, tmp_path)
    assert status(answer) == 503
    assert "shared folders are not available in this desktop" in body(answer)


def test_bytes_after_the_head_are_refused(key_file: Path, tmp_path: Path) -> None:
    answer, _ = run_slave(req() + b"\x00\x00\x00\x05", key_file, tmp_path)
    assert status(answer) == 400
    assert "after the request head" in body(answer)


# --- the mount point, made without following the user's links -------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def test_mount_point_is_made_below_redirected(home: Path) -> None:
    uid, gid = os.getuid(), os.getgid()
    path = mount_point(str(home), "My Docs", uid, gid)
    assert path == str(home / "Redirected" / "My Docs")
    assert (home / "Redirected" / "My Docs").is_dir()
    assert (home / "Redirected").stat().st_mode & 0o777 == 0o700
    assert mount_point(str(home), "My Docs", uid, gid) == path  # again: the same directory


def test_a_planted_link_is_replaced_never_followed(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (home / "Redirected").symlink_to(target)
    path = mount_point(str(home), "docs", os.getuid(), os.getgid())
    assert not (home / "Redirected").is_symlink()
    assert Path(path).is_dir()
    assert list(target.iterdir()) == []  # nothing made through the link
    (home / "Redirected" / "docs").rmdir()
    (home / "Redirected" / "docs").symlink_to(target)
    mount_point(str(home), "docs", os.getuid(), os.getgid())
    assert not (home / "Redirected" / "docs").is_symlink()
    assert list(target.iterdir()) == []


def test_sshfs_runs_passive_in_the_foreground_on_the_mount_point() -> None:
    argv = sshfs_argv("/home/u/Redirected/-o x")
    assert argv[:2] == ["sshfs", "-f"]
    assert "passive" in argv[3].split(",")
    assert argv[-1] == "/home/u/Redirected/-o x"  # absolute: never read as an option


def test_fuse_mounts_below_the_shares_directory() -> None:
    mountinfo = "\n".join(
        [
            "22 1 0:21 / / rw - overlay overlay rw",
            "71 22 0:52 / /home/u/Redirected/docs rw,nosuid - fuse.sshfs qvd-client: rw",
            r"72 22 0:53 / /home/u/Redirected/My\040Docs rw - fuse.sshfs qvd-client: rw",
            "73 22 0:54 / /home/u/Redirected/t rw - tmpfs none rw",
            "74 22 0:55 / /home/u/Redirectedx/y rw - fuse.sshfs qvd-client: rw",
            "75 22 0:56 / /home/u/Redirected rw - fuse.sshfs qvd-client: rw",
        ]
    )
    assert sorted(fuse_mounts_below(mountinfo, "/home/u/Redirected")) == [
        "/home/u/Redirected/My Docs",
        "/home/u/Redirected/docs",
    ]


def test_throughput_counts_what_comes_and_sends_what_is_asked(
    key_file: Path, tmp_path: Path
) -> None:
    base = req("/throughput", method="POST", upgrade="qvd:throughput/1.0")[:-2]
    answer, code = run_slave(
        base + b"X-QVD-Receive: 300000\r\n\r\n" + b"x" * 300_000, key_file, tmp_path,
        close_after=False,
    )  # fmt: skip
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert rest == b"300000\n"
    assert code == 0
    answer, code = run_slave(base + b"X-QVD-Send: 200000\r\n\r\n", key_file, tmp_path)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert len(rest) == 200_000
    assert code == 0
