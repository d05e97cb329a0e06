"""``mask``: what an audit entry never stores."""

from __future__ import annotations

from qvd.api.actions.audit import MASK, mask
from qvd.config import Config


def test_secret_looking_argument_names_are_masked_at_any_depth() -> None:
    args = {
        "arguments": {
            "name": "alice",
            "password": "pw1",
            "__properties__": {"ldap.bindpass": "pw2", "colour": "blue"},
            "items": [{"admin_passwd": "pw3", "sid": "s"}],
        }
    }
    assert mask(args) == {
        "arguments": {
            "name": "alice",
            "password": MASK,
            "__properties__": {"ldap.bindpass": MASK, "colour": "blue"},
            "items": [{"admin_passwd": MASK, "sid": MASK}],
        }
    }


def test_the_value_of_a_secret_token_is_masked_not_its_name() -> None:
    set_secret = {"key": "auth.ldap.bindpass", "value": "Bind-Pw-1", "tenant_id": 3}
    set_plain = {"key": "auth.ldap.host", "value": "ldap://dir"}
    assert mask(set_secret) == {"key": "auth.ldap.bindpass", "value": MASK, "tenant_id": 3}
    assert mask(set_plain) == set_plain


def test_known_secret_values_are_masked_wherever_they_appear() -> None:
    known = {"Db-Passw0rd-xyz", "abc"}
    args = {
        "value": "Db-Passw0rd-xyz",
        "host": "ldap://xDb-Passw0rd-xyz.example",
        "list": ["abc", "abcdef"],
        "n": 3,
    }
    assert mask(args, known) == {
        "value": MASK,
        "host": f"ldap://x{MASK}.example",
        "list": [MASK, "abcdef"],  # a short secret only where a value equals it
        "n": 3,
    }


def test_the_configuration_knows_its_secret_values() -> None:
    config = (
        Config()
        .with_overrides({"database.password": "Db-Passw0rd-xyz", "metrics.token": "scrape-1"})
        .with_db({}, {5: {"auth.ldap.bindpass": "tenant-bind", "auth.ldap.host": "ldap://d"}})
    )
    assert config.secret_values() == {"Db-Passw0rd-xyz", "scrape-1", "tenant-bind"}
