"""Attack test: replaying a one-time code (password + TOTP) seen once.

On main a TOTP code was accepted again for its whole period (and the leeway's), so
credentials read off a screen, a proxy log or a shoulder logged in again. Now a code is
spent by its first login; only the client that used it may use it once more, within
30 s (the QVD client sends the same credentials for ``list_of_vm`` and then
``connect_to_vm``). Against the real L7R (TLS, PostgreSQL): the client's pair works, a
third use, a use from another address and a use after the window are refused.
"""

from __future__ import annotations

from sqlalchemy import text

from tests.l7r.auth.test_totp import SECRET32, current_codes, set_totp_secret
from tests.l7r.conftest import PASSWORD, Lab
from tests.l7r.conftest import lab as lab
from tests.l7r.ldap_fixture import basic, refused, set_config
from tests.security.logins import request

CLIENT, ATTACKER = "127.0.0.2", "127.0.0.5"
BOB_SECRET = "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU"


def _bob_id(lab: Lab) -> int:
    with lab.engine.connect() as conn:
        return int(conn.execute(text("SELECT id FROM users WHERE login = 'bob'")).scalar_one())


def test_a_code_serves_one_client_pair_and_nothing_else(lab: Lab) -> None:
    set_config(lab.engine, 1, {"l7r.auth.plugins": "totp"})
    set_totp_secret(lab.engine, 1, lab.seed.user_id, SECRET32)
    set_totp_secret(lab.engine, 1, _bob_id(lab), BOB_SECRET)
    code, _, _ = current_codes(SECRET32)
    bob_code, _, _ = current_codes(BOB_SECRET)
    alice = basic("alice", PASSWORD + code)
    assert request(lab, "/qvd/list_of_vm", alice, source=CLIENT).status == 200
    assert request(lab, "/qvd/list_of_vm", alice, source=CLIENT).status == 200  # the pair
    refused(request(lab, "/qvd/list_of_vm", alice, source=CLIENT), b"already used")
    refused(request(lab, "/qvd/list_of_vm", alice, source=ATTACKER), b"already used")

    bob = basic("bob", PASSWORD + bob_code)
    assert request(lab, "/qvd/list_of_vm", bob, source=CLIENT).status == 200
    refused(request(lab, "/qvd/list_of_vm", bob, source=ATTACKER), b"already used")
    with lab.engine.begin() as conn:  # the client comes back after the reuse window
        conn.execute(text("UPDATE user_totp_uses SET used_at = now() - interval '31 seconds'"))
    refused(request(lab, "/qvd/list_of_vm", bob, source=CLIENT), b"already used")
