"""The start helper's arguments (its mounts are exercised by the LXC tests)."""

from __future__ import annotations

import pytest

from qvd.hkd.backends.lxc.mountns import parse_spec


def test_paths_are_whole_argv_words() -> None:
    single, binds = parse_spec([
        "--base", "/b/10000-a:b c", "--lower", "/l", "--start", "1000000", "--count", "65536",
        "--bind", "/homefs/a:b", "/ct/home", "--bind", "/o/x", "/ct/layer",
    ])  # fmt: skip
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
