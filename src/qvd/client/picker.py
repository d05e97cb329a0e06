"""Choosing a desktop when none was named: one goes straight, several get a menu (pure).

1) alice-desk      running
2) alice-dev       stopped  [blocked]
Desktop to connect to (number, name or id; empty to quit):
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["NoDesktop", "choose", "menu_lines"]

Vm = Mapping[str, Any]


class NoDesktop(Exception):
    """The user has no desktop at all."""


def menu_lines(vms: Sequence[Vm]) -> list[str]:
    width = max(len(str(vm.get("name", ""))) for vm in vms)
    lines = []
    for number, vm in enumerate(vms, 1):
        blocked = "  [blocked]" if vm.get("blocked") else ""
        lines.append(
            f"{number:3d}) {vm.get('name', '')!s:<{width}}  {vm.get('state', '')}{blocked}"
        )
    return lines


def _match(answer: str, vms: Sequence[Vm]) -> Vm | None:
    if answer.isdigit():
        number = int(answer)
        if 1 <= number <= len(vms):
            return vms[number - 1]
        by_id = [vm for vm in vms if vm.get("id") == number]
        return by_id[0] if by_id else None
    named = [vm for vm in vms if str(vm.get("name", "")).lower() == answer.lower()]
    return named[0] if len(named) == 1 else None


def choose(
    vms: Sequence[Vm],
    ask: Callable[[str], str],
    say: Callable[[str], None],
    *,
    attempts: int = 5,
) -> int | None:
    """The id of the chosen desktop; None when the user quits (empty answer, EOF)."""
    if not vms:
        raise NoDesktop("you have no desktop: ask your administrator for one")
    ordered = sorted(vms, key=lambda vm: int(vm.get("id", 0)))
    if len(ordered) == 1:
        return int(ordered[0]["id"])
    say("Your desktops:")
    for line in menu_lines(ordered):
        say(line)
    for _ in range(attempts):
        try:
            answer = ask("Desktop to connect to (number, name or id; empty to quit): ").strip()
        except EOFError:
            return None
        if not answer:
            return None
        found = _match(answer, ordered)
        if found is not None:
            return int(found["id"])
        say(f"No desktop matches {answer[:40]!r}.")
    return None
