"""Parsing credentials: Basic and Bearer authorization, logins with a tenant, extras."""

from __future__ import annotations

import base64

import pytest

from qvd.l7r.auth.credentials import Basic, Bearer, auth_extras, parse_authorization, split_login
from qvd.l7r.errors import Unauthorized


def test_credentials() -> None:
    basic = "Basic " + base64.b64encode(b"Alice@Acme:pw:x").decode()
    assert parse_authorization(basic) == Basic(login="Alice@Acme", password="pw:x")
    bearer = parse_authorization("Bearer " + base64.b64encode(b"MYTOKEN123").decode())
    assert isinstance(bearer, Bearer)
    assert bearer.candidates[0] == "MYTOKEN123"
    for bad in (None, "", "Basic !!!", "Digest x", "Basic " + base64.b64encode(b"x").decode()):
        with pytest.raises(Unauthorized):
            parse_authorization(bad)
    kw = {"separators": "@#", "default_tenant": "default", "case_sensitive": False}
    assert split_login(" Alice@Acme ", **kw) == ("alice", "acme")  # type: ignore[arg-type]
    assert split_login("bob#t2", **kw) == ("bob", "t2")  # type: ignore[arg-type]
    assert split_login("Carol", **kw) == ("carol", "default")  # type: ignore[arg-type]
    assert split_login("Jo.Doe@Example.com@acme", **kw) == ("jo.doe@example.com", "acme")  # type: ignore[arg-type]
    for bad in ("../../etc@acme", "/@acme", "x\nlxc.hook.pre-start = /bin/sh@acme",
                "-rf@acme", "bob@../x", "bob@a\u202eb"):  # fmt: skip
        with pytest.raises(Unauthorized, match="is not a valid"):
            split_login(bad, **kw)  # type: ignore[arg-type]
    extras = {"auth-" + b"LANG".hex(): base64.b64encode(b"es").decode(), "auth-zz": "x"}
    assert auth_extras(extras) == {"LANG": "es"}
