"""Home directory names from logins never leave homefs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qvd.hkd.backends.lxc.layout import HOME_KEY_MAX, BadHomeKey, Layout, check_home_key


def layout(tmp_path: Path) -> Layout:
    return Layout(images=tmp_path / "images", basefs=tmp_path / "basefs",
                  overlayfs=tmp_path / "overlayfs", homefs=tmp_path / "homefs",
                  lxcpath=tmp_path / "lxc")  # fmt: skip


@pytest.mark.parametrize(
    "key", ["", ".", "..", "../../etc", "/", "/etc", "a/b", "a/../..", "-rf", ".hidden",
            "x" * (HOME_KEY_MAX + 1), "a\nb", "a b", "a\x00b", "a\tb"],
)  # fmt: skip
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(BadHomeKey):
        check_home_key(key)


@pytest.mark.parametrize("key", ["alice", "10000-fs", "bob@example.com", "DOM\\carol", "é"])
def test_plain_keys_are_kept(tmp_path: Path, key: str) -> None:
    lay = layout(tmp_path)
    lay.homefs.mkdir()
    assert lay.home(key) == lay.homefs / key


def test_a_home_that_is_a_link_out_of_homefs_is_refused(tmp_path: Path) -> None:
    lay = layout(tmp_path)
    lay.homefs.mkdir()
    os.symlink("/etc", lay.homefs / "mallory")
    with pytest.raises(BadHomeKey, match="resolves outside"):
        lay.home("mallory")
    with pytest.raises(BadHomeKey):
        lay.home("../../etc")
