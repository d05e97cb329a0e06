"""The identity given to a guest through fw_cfg."""

from __future__ import annotations

import json

import pytest

from qvd.hkd.backends.kvm.identity import hostname_for, identity_json


@pytest.mark.parametrize("name", ["desk1", "Alice-PC", "a", "x" * 63, "9lives"])
def test_a_host_name_is_kept(name: str) -> None:
    assert hostname_for(5, name) == name


@pytest.mark.parametrize(
    "name", ["", "-a", "a-", "a b", "a.b", "x" * 64, "a_b", "naïve", "a\n", "$(reboot)"]
)
def test_anything_else_becomes_qvd_id(name: str) -> None:
    assert hostname_for(5, name) == "qvd-5"


def test_the_json_contract() -> None:
    body = json.loads(identity_json(12, "my desk", "sekret", "qvd-home"))
    assert body == {
        "version": 1,
        "vm_id": 12,
        "hostname": "qvd-12",
        "vma_secret": "sekret",
        "home_serial": "qvd-home",
    }
    assert json.loads(identity_json(12, "d", "s", None))["home_serial"] is None
