"""Configuration rows in the database override the file, globally and per tenant."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from qvd.config import ConfigValueError, config_from_text
from qvd.db import config_with_db


def test_database_rows_override_the_file(engine: Engine) -> None:
    file_config = config_from_text("l7r.port = 9000\nl7r.auth.plugins = default\n", source="f")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants (id, name) VALUES (50, 'acme')"))
        conn.execute(
            text(
                "INSERT INTO configs VALUES (-1, 'l7r.port', '9443'), "
                "(-1, 'l7r.auth.plugins', 'ldap'), (50, 'l7r.auth.plugins', 'auto,ldap'), "
                "(50, 'l7r.port', '1')"
            )
        )
    config = config_with_db(file_config, engine)
    assert config.get_int("l7r.port") == 9443
    assert config.get_int("l7r.port", tenant_id=50) == 9443  # not a per-tenant token
    assert config.get_list("l7r.auth.plugins") == ["ldap"]
    assert config.get_list("l7r.auth.plugins", tenant_id=50) == ["auto", "ldap"]
    assert config.get_list("l7r.auth.plugins", tenant_id=1) == ["ldap"]


def test_a_bad_row_is_reported_with_its_origin_and_left_out(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants (id, name) VALUES (50, 'acme')"))
        conn.execute(
            text(
                "INSERT INTO configs VALUES (-1, 'l7r.port', 'eighty'), "
                "(-1, 'l7r.auth.plugins', 'ldap'), (50, 'auth.auto.osf_id', 'desk'), "
                "(50, 'l7r.auth.plugins', 'auto,ldap')"
            )
        )
    with pytest.raises(ConfigValueError, match=r"database configs \(global\): l7r.port"):
        config_with_db(config_from_text(""), engine, strict=True)
    config = config_with_db(config_from_text(""), engine)
    assert config.get_int("l7r.port") == 8443  # the bad row is left out ...
    assert config.get_list("l7r.auth.plugins") == ["ldap"]  # ... the good ones are kept
    assert config.get_list("l7r.auth.plugins", tenant_id=50) == ["auto", "ldap"]
    assert config.raw("auth.auto.osf_id", tenant_id=50) is None
    assert "ignoring a configuration row: database configs (global): l7r.port" in caplog.text
