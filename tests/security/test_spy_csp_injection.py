"""CSP injection through the spy launcher: the WAT's launcher page widens its CSP's
``form-action`` to the portal URL the API answered, built from the node's address. An
address crafted by whoever can name a node (``'; script-src *``, a second directive, a
``javascript:`` or plain-http target, a query carrying data out) would otherwise
rewrite the policy of a page that holds a ticket. Only a plain
``https://host:port/path`` becomes a source; anything else is refused with the page
kept at the strict policy, and no launcher is shown.

Guard: ``qvd.wat.csp.form_target_source`` (used by ``qvd.wat.pages.vms.spy_vm``)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from qvd.wat.csp import CSP
from tests.wat.conftest import Wat, set_vm_runtime
from tests.wat.conftest import wat as wat

HOSTILE = [
    "evil.example:1/spy; script-src *; x",
    "evil.example:1 'unsafe-inline'",
    "evil.example\r\nSet-Cookie: a=b",
    "evil.example/x?y=",
    "a b",
]


@pytest.mark.parametrize("address", HOSTILE)
def test_a_hostile_node_address_does_not_reach_the_csp(
    wat: Wat, engine: Engine, address: str
) -> None:
    vm_id = wat.world.vms["A"]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE hosts SET address = :a WHERE id = :h"),
            {"a": address, "h": wat.world.host},
        )
    set_vm_runtime(engine, vm_id, vm_state="running", vm_cmd=None, host_id=wat.world.host)
    csrf = wat.login()
    r = wat.client.post(f"/vms/{vm_id}/spy", data={"csrf": csrf})
    assert r.status_code == 502, r.text
    assert r.headers["content-security-policy"] == CSP
    assert 'id="spy-open"' not in r.text
    assert 'name="ticket"' not in r.text
    assert "The user portal cannot be reached" in r.text
