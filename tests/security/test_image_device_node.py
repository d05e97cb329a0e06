"""A device node in an image: a member named ``dev`` that is the character device 1,3
(``/dev/null``'s numbers, any would do) with mode 0666, and a block device elsewhere.
Before the fix the checker let ``dev`` through (it counted as "in dev/") and GNU tar's
``--exclude=dev/*`` did not exclude ``dev`` itself, so the node created a 0666 host
device in the shared base. Now every such image is refused, by the node's real unpack
path and by the upload check, and no special file is ever on disk; the devices that
real images carry under a ``dev/`` directory are dropped, never written."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from qvd.api.errors import InvalidRequest
from qvd.api.uploads.images import check_image
from qvd.hkd.backends.base import TerminalBackendError
from qvd.imagefile import Limits
from tests.security.imagefiles import (
    Member,
    backend_for,
    dir_member,
    entry_member,
    file_member,
    make_image,
)

LIMITS = Limits(max_bytes=1 << 30, max_members=1000)


def _special_files(root: Path) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                found.append(os.path.join(folder, name))
    return found


ATTACKS: dict[str, tuple[Member, ...]] = {
    "dev-is-a-char-device": (entry_member("./dev", tarfile.CHRTYPE, major=1, minor=3, mode=0o666),),
    "dev-without-dot": (entry_member("dev", tarfile.CHRTYPE, major=1, minor=3, mode=0o666),),
    "block-device-in-etc": (
        dir_member("./etc"),
        entry_member("./etc/disk", tarfile.BLKTYPE, major=8, minor=0, mode=0o666),
    ),
    "device-under-dev-that-is-no-directory": (
        file_member("./dev", b""),
        entry_member("./dev/mem", tarfile.CHRTYPE, major=1, minor=1, mode=0o666),
    ),
    "fifo-in-tmp": (dir_member("./tmp"), entry_member("./tmp/pipe", tarfile.FIFOTYPE)),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_image_with_a_device_node_is_refused(tmp_path: Path, attack: str) -> None:
    root_only = os.geteuid() == 0
    assert root_only, "unpacking device nodes needs root (as the node daemon runs)"
    image = make_image(
        tmp_path / "evil.tar.zst", dir_member("./"), file_member("./etc-hostname"),
        *ATTACKS[attack],
    )  # fmt: skip
    storage = tmp_path / "storage"
    with pytest.raises(TerminalBackendError, match=r"device node|FIFO|'dev' must be a directory"):
        backend_for(storage).ensure_base(4300, image)
    assert _special_files(storage) == []
    assert [p.name for p in (storage / "basefs").iterdir() if not p.name.startswith("lock.")] == []
    with pytest.raises(InvalidRequest, match=r"device node|FIFO|'dev' must be a directory"):
        check_image(image, "evil.tar.zst", LIMITS)


def test_devices_under_a_real_dev_directory_are_dropped(tmp_path: Path) -> None:
    """What debootstrap leaves in ``dev/`` (null, zero, console …) is never written:
    LXC gives every container its own ``/dev``."""
    image = make_image(
        tmp_path / "good.tar.zst", dir_member("./"), dir_member("./dev"),
        entry_member("./dev/null", tarfile.CHRTYPE, major=1, minor=3, mode=0o666),
        entry_member("./dev//zero", tarfile.CHRTYPE, major=1, minor=5, mode=0o666),
        dir_member("./dev/pts"), file_member("./etc-hostname", b"vm\n"),
    )  # fmt: skip
    storage = tmp_path / "storage"
    base = backend_for(storage).ensure_base(4301, image)
    assert (base / "etc-hostname").read_text() == "vm\n"
    assert sorted(p.name for p in (base / "dev").iterdir()) == ["pts"]
    assert _special_files(storage) == []
