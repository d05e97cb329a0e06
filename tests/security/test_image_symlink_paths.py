"""Link paths that only differ from a checked name by spelling. Before the fix the
checker compared raw names: a symbolic link stored as ``a//b`` (pointing outside)
was not recognised as the parent of ``a/b/passwd``, so GNU tar wrote ``passwd``
through the link, outside the image's root (here into a directory standing for
``/etc``). Names are now normalised (``./``, ``//``, trailing ``/``) before the link
and traversal checks, and any ``..`` in a member's name is refused."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from qvd.api.errors import InvalidRequest
from qvd.api.uploads.images import check_image
from qvd.hkd.backends.base import TerminalBackendError
from qvd.imagefile import Limits
from tests.security.imagefiles import Member, backend_for, dir_member, entry_member, file_member
from tests.security.imagefiles import make_image as build

LIMITS = Limits(max_bytes=1 << 30, max_members=1000)


def attacks(outside: Path) -> dict[str, tuple[Member, ...]]:
    """Each writes ``passwd`` into ``outside`` if a link is followed."""
    target = str(outside)
    return {
        "double-slash": (
            dir_member("./a"),
            entry_member("./a//b", tarfile.SYMTYPE, link=target),
            file_member("./a/b/passwd", b"root::0:0::/:/bin/sh\n"),
        ),
        "dot-component": (
            dir_member("./a"),
            entry_member("./a/./b", tarfile.SYMTYPE, link=target),
            file_member("./a/b/passwd", b"root::0:0::/:/bin/sh\n"),
        ),
        "trailing-slash": (
            entry_member("./b/", tarfile.SYMTYPE, link=target),
            file_member("b/passwd", b"root::0:0::/:/bin/sh\n"),
        ),
        "dotdot-in-name": (
            dir_member("./a"),
            entry_member("./a/../b", tarfile.SYMTYPE, link=target),
            file_member("./b/passwd", b"root::0:0::/:/bin/sh\n"),
        ),
        "relative-link-climbing": (
            dir_member("./a"),
            entry_member("./x", tarfile.SYMTYPE, link="./a/../../etc"),
            file_member("./x/passwd", b"root::0:0::/:/bin/sh\n"),
        ),
        "climbing-member": (file_member("./a/../../etc/passwd", b"root::0:0::/:/bin/sh\n"),),
    }


@pytest.mark.parametrize("attack", list(attacks(Path("/x"))))
def test_a_link_spelt_differently_is_still_a_link(tmp_path: Path, attack: str) -> None:
    outside = tmp_path / "etc"  # stands for the node's /etc
    outside.mkdir()
    image = build(tmp_path / "evil.tar.zst", dir_member("./"), *attacks(outside)[attack])
    storage = tmp_path / "storage"
    with pytest.raises(TerminalBackendError, match=r"symbolic link|climbs out|points above"):
        backend_for(storage).ensure_base(4400, image)
    assert list(outside.iterdir()) == []
    assert [p.name for p in (storage / "basefs").iterdir() if not p.name.startswith("lock.")] == []
    with pytest.raises(InvalidRequest, match=r"symbolic link|climbs out|points above"):
        check_image(image, "evil.tar.zst", LIMITS)
    assert list(outside.iterdir()) == []
