"""Attack test: a hostile desktop speaks SFTP itself on a shared folder's channel and
walks out of the folder (``..``, absolute paths, a link in the folder pointing at the
client user's files, writing through a read-only share).

Before the fix the client ran ``sftp-server -d <folder>``: ``-d`` only sets the starting
directory, and ``get /home/alice/.ssh/id_ed25519`` worked. Now the server the client
starts for a share (``qvd.client.shares.server_argv``) is confined by bubblewrap to the
folder. The desktop's side is played by OpenSSH's ``sftp`` client talking straight to
that server command (``sftp -D``), as sshfs would over the slave channel."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from qvd.client.shares import Share, server_argv

BWRAP = shutil.which("bwrap")
pytestmark = pytest.mark.skipif(BWRAP is None, reason="bubblewrap: scripts/deps-devices.sh")


def _sftp(share: Share, *commands: str) -> subprocess.CompletedProcess[str]:
    argv = server_argv(share, BWRAP)
    assert argv is not None
    return subprocess.run(
        ["sftp", "-b", "-", "-D", shlex.join(argv)],
        input="".join(f"{c}\n" for c in commands), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def client_home(tmp_path: Path) -> Path:
    home = tmp_path / "alice"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    (home / "Documents").mkdir()
    (home / "Documents" / "report.txt").write_text("shared on purpose\n")
    (home / "Documents" / "keys").symlink_to(home / ".ssh")
    return home


def test_the_shared_file_is_served(client_home: Path, tmp_path: Path) -> None:
    got = tmp_path / "got.txt"
    done = _sftp(Share(client_home / "Documents"), f"get report.txt {got}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert got.read_text() == "shared on purpose\n"


@pytest.mark.parametrize(
    "path",
    ["../.ssh/id_ed25519", "{home}/.ssh/id_ed25519", "keys/id_ed25519", "/etc/shadow",
     "../../../../../etc/shadow"],
)  # fmt: skip
def test_nothing_outside_the_folder_can_be_read(
    client_home: Path, tmp_path: Path, path: str
) -> None:
    got = tmp_path / "stolen"
    done = _sftp(Share(client_home / "Documents"), f"get {path.format(home=client_home)} {got}")
    assert done.returncode != 0, done.stdout
    assert not got.exists()


def test_nothing_outside_the_folder_can_be_written(client_home: Path, tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    planted.write_text("from the desktop\n")
    for target in ("../.bashrc", f"{client_home}/.bashrc", "keys/authorized_keys"):
        _sftp(Share(client_home / "Documents"), f"put {planted} {target}")
    assert not (client_home / ".bashrc").exists()
    assert not (client_home / ".ssh" / "authorized_keys").exists()


def test_a_read_only_share_takes_no_write(client_home: Path, tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    planted.write_text("from the desktop\n")
    share = Share(client_home / "Documents", read_only=True)
    done = _sftp(share, f"put {planted} new.txt")
    assert done.returncode != 0
    done = _sftp(share, "rm report.txt")
    assert done.returncode != 0
    assert sorted(p.name for p in (client_home / "Documents").iterdir()) == ["keys", "report.txt"]
