"""Building small hostile image tarballs for the tar-check attacks, and the node's
real unpack path (``LxcBackend.ensure_base``) to run them through."""

from __future__ import annotations

import tarfile
from pathlib import Path

from qvd.config import config_from_text
from qvd.hkd.backends.lxc import LxcBackend
from tests.imagefile.test_tarcheck import Member, file_member, make_image

__all__ = ["Member", "backend_for", "dir_member", "entry_member", "file_member", "make_image"]


def dir_member(name: str) -> Member:
    return entry_member(name, tarfile.DIRTYPE, mode=0o755)


def entry_member(
    name: str, kind: bytes, *, link: str = "", major: int = 0, minor: int = 0, mode: int = 0o644
) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        info.devmajor, info.devminor = major, minor
        info.mode = mode
        tar.addfile(info)

    return add


def backend_for(root: Path, **tokens: str) -> LxcBackend:
    """The LXC backend over storage in ``root`` (it only unpacks here: no container)."""
    lines = [f"path.storage.root = {root}", f"path.run = {root}/run"]
    lines += [f"{key} = {value}" for key, value in tokens.items()]
    return LxcBackend(config_from_text("\n".join(lines) + "\n"))
