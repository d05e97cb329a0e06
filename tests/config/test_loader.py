"""Layering, interpolation, typing and located errors of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.config import (
    CONFIG_ENV,
    GLOBAL_TENANT,
    TOKENS,
    Config,
    ConfigFileError,
    ConfigValueError,
    config_from_text,
    load_config,
)


def test_every_token_default_resolves_and_has_its_type() -> None:
    config = Config()
    for token in TOKENS:
        if token.default is None:
            assert config.raw(token.name) is None
            continue
        value = config.get(token.name)
        assert "${" not in value, token.name
        match token.kind.name:
            case "INT":
                config.get_int(token.name)
            case "FLOAT":
                config.get_float(token.name)
            case "BOOL":
                config.get_bool(token.name)


def test_defaults_then_file_then_global_rows_then_tenant_rows() -> None:
    base = config_from_text("l7r.auth.plugins = ldap\nl7r.port = 9443\n", source="node.conf")
    assert base.get_list("l7r.auth.plugins") == ["ldap"]
    assert base.get_int("l7r.port") == 9443
    assert base.get("log.level") == "INFO"  # built-in default

    layered = base.with_db(
        {"l7r.auth.plugins": "auto,ldap", "l7r.port": "10443"},
        {7: {"l7r.auth.plugins": "totp"}},
    )
    assert layered.get_int("l7r.port") == 10443
    assert layered.get_list("l7r.auth.plugins") == ["auto", "ldap"]
    assert layered.get_list("l7r.auth.plugins", tenant_id=7) == ["totp"]
    assert layered.get_list("l7r.auth.plugins", tenant_id=8) == ["auto", "ldap"]
    setting = layered.setting("l7r.auth.plugins", tenant_id=7)
    assert setting is not None
    assert setting.source == "database configs (tenant 7)"


def test_tenant_rows_only_override_per_tenant_tokens() -> None:
    config = Config().with_db({}, {7: {"l7r.port": "1", "auth.ldap.host": "ldap.example"}})
    assert config.get_int("l7r.port", tenant_id=7) == 8443
    assert config.get("auth.ldap.host", tenant_id=7) == "ldap.example"
    assert config.raw("auth.ldap.host") is None


def test_database_rows_cannot_move_the_node_or_its_database() -> None:
    config = config_from_text("nodename = node1\n").with_db(
        {"nodename": "evil", "database.host": "evil.example", "path.database": "/x"}
    )
    assert config.get("nodename") == "node1"
    assert config.get("database.host") == ""
    assert config.get("path.database") == "/var/lib/qvd/pgdata"


def test_interpolation_follows_the_layers() -> None:
    config = config_from_text("path.run = /srv/run\n")
    assert config.get("path.l7r.ssl.key") == "/srv/run/l7r/ssl/key.pem"
    assert config.get("path.database.socket") == "/srv/run/pg"
    tenant = Config().with_db(
        {}, {3: {"auth.ldap.base": "dc=t3", "auth.ldap.filter": "${auth.ldap.base}"}}
    )
    assert tenant.get("auth.ldap.filter", tenant_id=3) == "dc=t3"


def test_os_specific_lines_apply_only_on_their_os() -> None:
    text = "path.run = /a\n@debian-12@path.run = /b\n@rhel-9@path.run = /c\n"
    assert config_from_text(text, os_id="debian-12").get("path.run") == "/b"
    assert config_from_text(text, os_id="ubuntu-24.04").get("path.run") == "/a"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("l7r.prot = 1\n", 1, "unknown configuration token 'l7r.prot' (did you mean 'l7r.port'?)"),
        ("\n\nl7r.port = eighty\n", 3, "l7r.port: 'eighty' is not an integer"),
        ("l7r.use_ssl = maybe\n", 1, "l7r.use_ssl: 'maybe' is not a boolean (use 1 or 0)"),
        ("log.level = ${nope}\n", 1, "log.level refers to ${nope}, which has no value"),
        ("path.run = ${path.tmp}\npath.tmp = ${path.run}\n", 1, "reference cycle"),
        ("path.log = ${path.log}\n", 1, "reference cycle: path.log -> path.log"),
        ("l7r.port = ${log.level}\n", 1, "l7r.port: 'INFO' is not an integer"),
    ],
)
def test_bad_values_are_located(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigValueError) as info:
        config_from_text(text, source="/etc/qvd/node.conf")
    assert info.value.source == "/etc/qvd/node.conf"
    assert info.value.line == line
    assert reason in info.value.reason


def test_bad_database_rows_say_where_they_are() -> None:
    with pytest.raises(ConfigValueError) as info:
        Config().with_db({"l7r.port": "x"})
    assert str(info.value) == "database configs (global): l7r.port: 'x' is not an integer"


def test_a_token_without_default_must_be_set() -> None:
    with pytest.raises(ConfigValueError, match="nodename is not set"):
        Config().get("nodename")


def test_load_from_file_env_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node_conf = tmp_path / "node.conf"
    node_conf.write_text("nodename = qvd-node-1\nl7r.port : 8444\n")
    assert load_config(node_conf).get("nodename") == "qvd-node-1"

    monkeypatch.setenv(CONFIG_ENV, str(node_conf))
    assert load_config().get_int("l7r.port") == 8444

    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "absent.conf"))
    with pytest.raises(ConfigFileError, match=r"absent\.conf: configuration file not found"):
        load_config()

    bad = tmp_path / "latin1.conf"
    bad.write_bytes(b"nodename = caf\xe9\n")
    with pytest.raises(ConfigFileError, match="not UTF-8"):
        load_config(bad)


def test_overrides_for_tools() -> None:
    config = Config().with_overrides({"path.run": "/tmp/x"}, source="test")
    assert config.get("path.database.socket") == "/tmp/x/pg"


SECRET = "Db-Passw0rd-under-test"


def _with_password() -> Config:
    return Config().with_overrides({"database.password": SECRET})


@pytest.mark.parametrize(
    "ref",
    ["database.password", "nodename", "path.storage.root", "internal.vm.port.vma", "metrics.token"],
)
def test_a_tenant_row_cannot_expand_a_node_or_secret_token(ref: str) -> None:
    with pytest.raises(ConfigValueError, match=r"a tenant row may refer only") as caught:
        _with_password().with_db({}, {7: {"auth.ldap.host": f"ldap://x${{{ref}}}"}})
    assert SECRET not in str(caught.value)


def test_a_tenant_row_may_expand_per_tenant_tokens() -> None:
    config = Config().with_db(
        {}, {7: {"auth.ldap.base": "dc=x", "auth.ldap.filter": "${auth.ldap.base}"}}
    )
    assert config.get("auth.ldap.filter", 7) == "dc=x"


def test_confinement_holds_along_the_chain() -> None:
    """A tenant row names a per-tenant token whose global value (legal for a global
    row) names a node path: the tenant's value is refused, the global one stays."""
    rows = {"auth.ldap.base": "${path.storage.root}"}
    config = _with_password().with_db(rows, {})
    assert config.get("auth.ldap.base") == "/var/lib/qvd/storage"
    with pytest.raises(ConfigValueError, match=r"path\.storage\.root") as caught:
        _with_password().with_db(rows, {7: {"auth.ldap.host": "ldap://${auth.ldap.base}"}})
    assert "/var/lib" not in str(caught.value)


def test_a_global_row_cannot_expand_a_secret() -> None:
    with pytest.raises(ConfigValueError, match="a global database row"):
        _with_password().with_db({"log.level": "${database.password}"}, {})
    # node.conf itself may (the node trusts its own file)
    config = Config().with_overrides(
        {"database.password": "x", "log.filename": "/l/${database.password}"}
    )
    assert config.get("log.filename") == "/l/x"


def test_check_db_row_refuses_before_writing() -> None:
    config = _with_password().with_db({"auth.ldap.base": "${path.storage.root}"}, {})
    with pytest.raises(ConfigValueError, match=r"path\.storage\.root"):
        config.check_db_row("auth.ldap.host", "ldap://${auth.ldap.base}", 7)
    with pytest.raises(ConfigValueError, match=r"database\.password"):
        config.check_db_row("log.level", "${database.password}", GLOBAL_TENANT)
    config.check_db_row("auth.ldap.host", "ldap://${auth.auto.di_tag}", 7)
