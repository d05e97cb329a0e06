"""The desktop menu of the client."""

from __future__ import annotations

import pytest

from qvd.client.picker import NoDesktop, choose, menu_lines

VMS = [
    {"id": 12, "name": "alice-dev", "state": "stopped", "blocked": 1},
    {"id": 7, "name": "alice-desk", "state": "running", "blocked": 0},
]


def test_one_desktop_goes_straight_several_get_a_menu() -> None:
    said: list[str] = []
    assert choose(VMS[1:], lambda prompt: "unused", said.append) == 7
    assert said == []
    answers = iter(["9", "nope", "2"])
    assert choose(VMS, lambda prompt: next(answers), said.append) == 12
    assert said[0] == "Your desktops:"
    assert said[1:3] == menu_lines(sorted(VMS, key=lambda vm: vm["id"]))
    assert "alice-desk" in said[1]
    assert said[2].endswith("[blocked]")
    assert said.count("No desktop matches 'nope'.") == 1
    assert choose(VMS, lambda prompt: "alice-desk", said.append) == 7  # by name
    assert choose(VMS, lambda prompt: "", said.append) is None  # empty: quit

    def eof(prompt: str) -> str:
        raise EOFError

    assert choose(VMS, eof, said.append) is None
    with pytest.raises(NoDesktop):
        choose([], eof, said.append)
