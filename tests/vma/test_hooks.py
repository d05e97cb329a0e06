"""The pure parts of a session: hooks."""

from __future__ import annotations

from pathlib import Path

from qvd.vma.config import VmaConfig
from qvd.vma.hooks import HookRunner, hook_argv


def test_hooks_get_key_value_arguments(tmp_path: Path) -> None:
    out = tmp_path / "args"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {out}\n[ "$2" != fail ]\n')
    hook.chmod(0o755)
    config = VmaConfig({"vma.on_action.connect": str(hook), "path.log": str(tmp_path / "log")})
    runner = HookRunner(config)
    assert runner.action("connect", {"a.b": "1"}, "listening")
    assert out.read_text().split("\n")[:-1] == [
        "a.b",
        "1",
        "qvd.vm.session.state",
        "listening",
        "qvd.hook.on_action",
        "connect",
    ]
    assert not runner.action("connect", {"a.b": "fail"}, "listening")
    assert runner.action("stop", {}, "connected")  # no hook configured: nothing to fail
    assert runner.provisioning("add_user", {}) is None
    assert hook_argv("/h", {"b": "2", "a": "1"}, {"x": "y"}) == ["/h", "a", "1", "b", "2", "x", "y"]
