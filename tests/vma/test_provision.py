"""The pure parts of a session: user provisioning."""

from __future__ import annotations

import pytest

from qvd.vma.config import VmaConfig
from qvd.vma.provision import ProvisionError, provision_commands, user_spec


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
