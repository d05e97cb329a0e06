"""Passwords in the session history: a user types their password (or a stranger
guesses one) at the L7R, through an NX client's Basic header or the portal's form. The
history records who logged in, from where, with what result, never the password: not
in the login column (the login a Basic header claims stops at the first ``:``), not in
the detail, not in the client info.

Guards: ``qvd.l7r.history.record_login`` (``wire.basic_login`` for a failed login's
claim, the chain's error message as the detail) and the recorder's columns."""

from __future__ import annotations

import base64

from tests.l7r.conftest import PASSWORD, Lab
from tests.l7r.conftest import lab as lab
from tests.l7r.test_history import get, rows
from tests.l7r.test_wire import B1

GUESS = "Sup3r-Guess-7731"


def _with(credentials: bytes) -> bytes:
    basic = b"Basic " + base64.b64encode(credentials)
    return B1.replace(b"Basic YWxpY2U6c2VjcmV0", basic)


def test_no_password_lands_in_a_row(lab: Lab) -> None:
    assert get(lab, _with(f"alice:{PASSWORD}".encode())).startswith(b"HTTP/1.1 200")
    assert get(lab, _with(f"alice:{GUESS}".encode())).startswith(b"HTTP/1.1 401")
    assert get(lab, _with(f"alice@default:{GUESS}:{GUESS}".encode())).startswith(b"HTTP/1.1 401")
    assert get(lab, _with(f"ghost@nowhere:{GUESS}".encode())).startswith(b"HTTP/1.1 401")
    assert get(lab, _with(f":{GUESS}".encode())).startswith(b"HTTP/1.1 401")
    recorded = rows(lab, "kind = 'login'")
    assert len(recorded) >= 4  # the ok one and the failures the chain checked
    everything = repr(recorded)
    assert GUESS not in everything
    assert PASSWORD not in [v for r in recorded for v in r.values()]
    assert base64.b64encode(f"alice:{GUESS}".encode()).decode() not in everything
