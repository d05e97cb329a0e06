"""The pure parts of a session: nxagent options, X authority, user provisioning, hooks."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from qvd.vma.config import VmaConfig
from qvd.vma.hooks import HookRunner, hook_argv
from qvd.vma.nxoptions import agent_options, xauthority_entries
from qvd.vma.provision import ProvisionError, provision_commands, user_spec


def test_agent_options_from_client_properties() -> None:
    line = agent_options(
        {
            "qvd.client.keyboard": "pc105/es",
            "qvd.client.os": "linux",
            "qvd.client.geometry": "1024x768",
            "qvd.client.fullscreen": "0",
            "qvd.client.link": "bad value;rm",
        },
        display=100,
        cookie="ab" * 16,
        accept="10.0.0.1",
    )
    assert line == (
        "nx/nx,link=adsl,keyboard=pc105/es,client=linux,geometry=1024x768,"
        "tolerancechecks=risky,listen=4100,accept=10.0.0.1,cookie=" + "ab" * 16 + ":100"
    )


def test_extra_args_cannot_open_the_agent_port() -> None:
    line = agent_options(
        {"qvd.client.nxagent.extra_args": "accept=0.0.0.0,cookie=x,listen=1,dpi=96"},
        display=100,
        cookie="cd" * 16,
        accept="",
    )
    assert "dpi=96" in line
    assert "accept=" not in line
    assert line.count("cookie=") == 1
    assert "listen=4100" in line


def test_xauthority_file_format() -> None:
    data = xauthority_entries(100, "00ff" * 8, hostname="vm1")
    (family,) = struct.unpack(">H", data[:2])
    assert family == 256
    offset = 2
    fields = []
    for _ in range(4):
        (length,) = struct.unpack(">H", data[offset : offset + 2])
        fields.append(data[offset + 2 : offset + 2 + length])
        offset += 2 + length
    assert fields == [b"vm1", b"100", b"MIT-MAGIC-COOKIE-1", bytes.fromhex("00ff" * 8)]
    assert data[offset : offset + 2] == b"\xff\xff"  # then a FamilyWild entry


def test_user_defaults_and_properties() -> None:
    config = VmaConfig()
    spec = user_spec({}, config)
    assert (spec.name, spec.group, spec.home, spec.groups, spec.uid) == (
        "qvd",
        "qvd",
        "/home/qvd",
        ("qvduser",),
        None,
    )
    spec = user_spec(
        {
            "qvd.vm.user.name": "alice",
            "qvd.vm.user.uid": "20001",
            "qvd.vm.user.gid": "20002",
            "qvd.vm.user.groups": "audio, video",
            "qvd.vm.user.home": "/srv/home/alice",
        },
        config,
    )
    assert provision_commands(
        spec, user_exists=False, existing_groups={"audio"}, home_exists=False
    ) == [
        ["groupadd", "-g", "20002", "--", "alice"],
        ["groupadd", "--", "video"],
        [
            "useradd",
            "-d",
            "/srv/home/alice",
            "-g",
            "alice",
            "-s",
            "/bin/bash",
            "-m",
            "-G",
            "audio,video",
            "-u",
            "20001",
            "--",
            "alice",
        ],
    ]
    assert provision_commands(spec, user_exists=True, existing_groups=set(), home_exists=True) == []


@pytest.mark.parametrize(
    "params",
    [
        {"qvd.vm.user.name": "-o"},
        {"qvd.vm.user.name": "Root Space"},
        {"qvd.vm.user.uid": "12a"},
        {"qvd.vm.user.home": "/home/../etc"},
        {"qvd.vm.user.groups": "ok,--bad"},
    ],
)
def test_invalid_user_properties(params: dict[str, str]) -> None:
    with pytest.raises(ProvisionError, match="invalid"):
        user_spec(params, VmaConfig())


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
