"""The connect query rules: client parameters and the VM id."""

from __future__ import annotations

import pytest

from qvd.l7r.errors import Forbidden, Unprocessable
from qvd.l7r.params import client_params, vm_id_of


def test_connect_params() -> None:
    query = [("qvd.client.link", "adsl"), ("id", "10"), ("custom.x", "")]
    assert vm_id_of(query) == 10
    assert client_params(query) == {"qvd.client.link": "adsl", "custom.x": ""}
    with pytest.raises(Unprocessable, match="parameter id is missing"):
        vm_id_of([("qvd.client.link", "adsl")])
    with pytest.raises(Unprocessable):
        vm_id_of([("id", "ten")])
    with pytest.raises(Forbidden, match="Invalid parameters: evil"):
        client_params([("evil", "1"), ("id", "1")])
