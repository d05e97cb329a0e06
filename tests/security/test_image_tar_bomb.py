"""A tar bomb: a few KiB of zstd that unpack to far more than ``di.unpack.max_bytes``
(or hold more members than ``di.unpack.max_members``). The node's real unpack path
(``LxcBackend.ensure_base``, GNU tar behind the checker) stops at the first member
over the limit, before its data is written, leaves no partial directory and says why;
the API's upload check refuses the same file."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from qvd.api.errors import InvalidRequest
from qvd.api.uploads.images import check_image
from qvd.hkd.backends.base import TerminalBackendError
from qvd.imagefile import ImageRejected, Limits, unpack_checked
from tests.security.imagefiles import backend_for, dir_member, file_member, make_image

LIMIT = 8 << 20  # the lowered di.unpack.max_bytes
BOMB = 256 << 20  # what one member claims, all zeros


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        buffer[:n] = b"\0" * n
        self.left -= n
        return n


def bomb(path: Path) -> Path:
    """``./``, ``./etc/hostname``, then ``./bomb`` (BOMB zero bytes), as .tar.zst."""
    plain = path.with_name(path.name.removesuffix(".zst"))
    with tarfile.open(plain, "w", format=tarfile.GNU_FORMAT) as tar:
        for add in (dir_member("./"), dir_member("./etc"), file_member("./etc/hostname", b"vm\n")):
            add(tar)
        info = tarfile.TarInfo("./bomb")
        info.size = BOMB
        tar.addfile(info, io.BufferedReader(_Zeros(BOMB), 1 << 20))
    subprocess.run(["zstd", "-q", "-19", "--rm", "-f", str(plain), "-o", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def bomb_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = bomb(tmp_path_factory.mktemp("bomb") / "bomb.tar.zst")
    assert image.stat().st_size < 1 << 20  # small on the wire, huge unpacked
    return image


def test_the_node_stops_a_tar_bomb_and_leaves_nothing(tmp_path: Path, bomb_image: Path) -> None:
    storage = tmp_path / "storage"
    backend = backend_for(storage, **{"di.unpack.max_bytes": str(LIMIT)})
    with pytest.raises(
        TerminalBackendError, match=r"more than 8388608 bytes.*di\.unpack\.max_bytes"
    ):
        backend.ensure_base(4242, bomb_image)
    basefs = storage / "basefs"
    assert [p.name for p in basefs.iterdir() if not p.name.startswith("lock.")] == []


def test_the_unpack_stops_at_the_bombs_header(tmp_path: Path, bomb_image: Path) -> None:
    """Refused at the header of ``./bomb`` (sizes are counted from headers, before the
    data is handed to GNU tar), and the partial directory is emptied."""
    dest = tmp_path / "root"
    dest.mkdir()
    with pytest.raises(ImageRejected, match=r"member './bomb': the image unpacks to more than"):
        unpack_checked(bomb_image, dest, limits=Limits(max_bytes=LIMIT, max_members=100))
    assert list(dest.iterdir()) == []


def test_too_many_members_is_a_bomb_too(tmp_path: Path) -> None:
    members = [dir_member("./"), *(file_member(f"./f{i}", b"") for i in range(50))]
    image = make_image(tmp_path / "many.tar.zst", *members)
    backend = backend_for(tmp_path / "storage", **{"di.unpack.max_members": "20"})
    with pytest.raises(TerminalBackendError, match=r"more than 20 members"):
        backend.ensure_base(4243, image)
    assert not any(p.name.startswith("untar-") for p in (tmp_path / "storage/basefs").iterdir())


def test_the_upload_check_refuses_the_bomb(bomb_image: Path) -> None:
    with pytest.raises(InvalidRequest, match="unpacks to more than"):
        check_image(bomb_image, "bomb.tar.zst", Limits(max_bytes=LIMIT, max_members=1000))
