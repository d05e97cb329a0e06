"""The start helper's arguments (its mounts are exercised by the LXC tests)."""

from __future__ import annotations

import pytest

from qvd.hkd.backends.lxc.mountns import mounts_below, parse_spec


def test_paths_are_whole_argv_words() -> None:
    single, binds, detach = parse_spec([
        "--base", "/b/10000-a:b c", "--lower", "/l", "--start", "1000000", "--count", "65536",
        "--bind", "/homefs/a:b", "/ct/home", "--bind", "/o/x", "/ct/layer", "--detach", "/h",
    ])  # fmt: skip
    assert detach == ["/h"]
    assert single == {"base": "/b/10000-a:b c", "lower": "/l", "start": "1000000",
                      "count": "65536"}  # fmt: skip
    assert binds == [("/homefs/a:b", "/ct/home"), ("/o/x", "/ct/layer")]


@pytest.mark.parametrize(
    "words", [[], ["--base", "/b"], ["--bind", "/a"], ["--nope", "x", "--base", "/b",
              "--lower", "/l", "--start", "1", "--count", "1"]],
)  # fmt: skip
def test_incomplete_or_unknown_arguments_are_refused(words: list[str]) -> None:
    with pytest.raises(ValueError, match=r"missing|unexpected"):
        parse_spec(words)


def test_mounts_below_a_root_deepest_first_with_escapes() -> None:
    info = "\n".join([
        "22 1 254:0 / / rw - ext4 /dev/vda rw",
        "90 22 7:0 / /s/homefs/alice rw - ext4 /dev/loop0 rw",
        "91 22 7:1 / /s/homefs/bob\\040smith rw - ext4 /dev/loop1 rw",
        "92 90 0:5 / /s/homefs/alice/sub rw - tmpfs none rw",
        "93 22 7:2 / /s/homefs-other/x rw - ext4 /dev/loop2 rw",
    ])  # fmt: skip
    assert mounts_below(info, ["/s/homefs"]) == [
        "/s/homefs/alice/sub", "/s/homefs/bob smith", "/s/homefs/alice",
    ]  # fmt: skip
    assert mounts_below(info, ["/nowhere"]) == []
