"""The name rules, one per kind, with names of real life and the attacks of issue #12."""

from __future__ import annotations

import pytest

from qvd.config.names import (
    ADMIN_NAME,
    CONFIG_KEY,
    CONFIG_VALUE,
    DI_FILE_NAME,
    DI_TAG,
    HOST_NAME,
    LOGIN,
    OSF_NAME,
    PATH_COMPONENT,
    PROPERTY_KEY,
    PROPERTY_VALUE,
    ROLE_NAME,
    TENANT_NAME,
    VM_NAME,
    NameRule,
    NameRuleError,
    check_host_address,
    is_safe_config_value,
    is_safe_path_component,
    login_path_key,
    shown,
)

LXC_HOOK = "x\nlxc.hook.pre-start = /bin/sh -c 'id > /tmp/pwned'"
# what no rule lets through, whatever the kind
EVERYWHERE_BAD = [
    "a\nb", "a\rb", "a\x00b", "a\x1bb", "a\x7fb", "a\x85b", "a\u2028b", "a\u2029b",
    "a\u202eb", "a\u202ab", "a\u2066b", "a\u2069b", "a\u200bb", "a\u200fb", "a\ufeffb",
    "a\ud800b", "a\ue000b", "a\U000e0001b",
]  # fmt: skip
ALL_RULES = [VM_NAME, OSF_NAME, ROLE_NAME, LOGIN, ADMIN_NAME, TENANT_NAME, DI_FILE_NAME,
             PATH_COMPONENT, DI_TAG, HOST_NAME, PROPERTY_KEY, PROPERTY_VALUE, CONFIG_KEY,
             CONFIG_VALUE]  # fmt: skip


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.kind)
def test_no_rule_lets_control_or_invisible_characters_through(rule: NameRule) -> None:
    for bad in EVERYWHERE_BAD:
        assert not rule.is_valid(bad), (rule.kind, bad)
    assert not rule.is_valid(LXC_HOOK)
    assert not rule.is_valid("x" * (rule.max_len + 1))
    assert not rule.is_valid(42)
    assert not rule.is_valid(None)


GOOD: dict[str, list[str]] = {
    "VM name": [
        "demo-desktop",
        "Ubuntu 24.04 (dev)",
        "Escritorio de José",
        "桌面 2",
        "jo.doe@example.com-1",
        "O'Brien [test]",
        "a",
        "x" * 64,
        "Jose\u0301",
    ],
    "login": [
        "alice",
        "jo.doe@example.com",
        "jürgen",
        "o_brien-2",
        "ñandú",
        "user123",
        "ALICE",
        "a" * 64,
        "x.y",
    ],
    "tenant name": ["default", "Acme Corp", "acme.madrid", "tenant_2", "Zürich-Nord"],
    "OSF name": ["Ubuntu 24.04 LTS", "win-apps (64 bit)"],
    "host name": ["node1", "qvd-node-01.example.com", "node1.", "a" * 63],
    "disk image file name": ["ubuntu.tar.gz", "10000-ubuntu-24.04.tar.zst", "My Image.qcow2"],
    "tag": ["default", "head", "2026-12-01-000", "v1.2+build.7", "release@2"],
    "property key": ["qvd.vm.user.home", "l7r.auth.plugin.totp.secret32", "Departamento", "my/key"],
    "property value": ["", "/home/alice", "a value with spaces and\ttabs", "x=y; z", "ñ"],
    "configuration key": ["auth.ldap.host", "vm.network.ip.start", "api.public.Motd"],
    "configuration value": ["ldap://ldap.example.com:389", "", "(uid=%u)"],
}
BAD: dict[str, list[str]] = {
    "VM name": [
        LXC_HOOK,
        "",
        "-x",
        ".",
        "..",
        ".hidden",
        "a/b",
        "a\\b",
        " x",
        "x ",
        "a\tb",
        "a\u00a0b",
        "a;b",
        "a$b",
        "a`b",
        'a"b',
        "a,b",
        "a=b",
        "a<b",
        "a|b",
        "a*b",
        "x" * 65,
        "\u0301x",
    ],
    "login": [
        "../../etc",
        "/",
        "..",
        ".",
        "-rf",
        "@tenant",
        ".bob",
        "a b",
        "a/b",
        "a\\b",
        "a#b",
        "a:b",
        "a$b",
        "",
        "x" * 65,
    ],
    "tenant name": ["*", "-", "a@b", "a#b", "../t", "a/b", ".t", " t", "", "x" * 81],
    "OSF name": [LXC_HOOK, "../o", "-o"],
    "host name": [
        "bad name",
        "under_score",
        "-h",
        "h-",
        "a..b",
        ".a",
        "a" * 64,
        "nödé",
        "a/b",
        "x" * 128,
    ],
    "disk image file name": [
        "../x.tar",
        "/etc/passwd",
        "a/b.tar",
        "..",
        ".",
        ".x.tar",
        "-x.tar",
        "a\\b.tar",
        "x" * 256,
    ],
    "tag": ["a b", "a/b", "-x", "a;b", "a$b", "a=b", "x" * 129, ""],
    "property key": ["a=b", "a:b", "a b", "#k", "!k", "-k", "a\\b", "", "x" * 1025],
    "property value": ["a\nb", "a\rb", "a\x00b", "a\u202eb"],
    "configuration key": ["auth.ldap.x y", "a/b", "ñ.x", ".x", "-x", "a=b", ""],
    "configuration value": ["ldap://h\nauth.ldap.binddn = x", "a\x00", "a\u2028b"],
}
RULES = {r.kind: r for r in ALL_RULES}


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_real_life_names_follow_their_rule(kind: str) -> None:
    for good in GOOD[kind]:
        assert RULES[kind].check(good) == good, (kind, good)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_names_are_refused(kind: str) -> None:
    for bad in BAD[kind]:
        with pytest.raises(NameRuleError) as info:
            RULES[kind].check(bad)
        assert info.value.kind == kind
        assert info.value.reason
        assert RULES[kind].summary in str(info.value)


def test_the_error_says_what_why_and_the_rule() -> None:
    with pytest.raises(NameRuleError) as info:
        VM_NAME.check(LXC_HOOK)
    message = str(info.value)
    assert message.startswith(r'"x\nlxc.hook.pre-start = /bin/sh -c ')
    assert "is not a valid VM name: it contains a line break (U+000A) (a VM name is 1-64" in (
        message
    )
    with pytest.raises(NameRuleError, match=r"invisible formatting character U\+202E"):
        VM_NAME.check("a\u202eb")
    with pytest.raises(NameRuleError, match="it contains '/'"):
        LOGIN.check("../../etc")
    with pytest.raises(NameRuleError, match="it starts with '-'"):
        LOGIN.check("-rf")
    with pytest.raises(NameRuleError, match="it is empty"):
        LOGIN.check("")


def test_shown_escapes_and_cuts() -> None:
    assert shown("a\nb") == r"'a\nb'"
    assert shown("a\u202eb") == r"'a\u202eb'"
    assert shown("x" * 100).endswith("... (100 characters)")
    assert len(shown("x" * 100)) < 90
    assert shown(3) == "a int"


def test_host_address() -> None:
    assert check_host_address("10.0.0.5") == "10.0.0.5"
    assert check_host_address(" 10.0.0.5 ") == "10.0.0.5"
    assert check_host_address("FD00:0::7") == "fd00::7"
    for bad in ("node1.example.com", "10.0.0.256", "10.0.0.1\nx", "", "10.0.0.1/24", 7):
        with pytest.raises(NameRuleError, match="host address"):
            check_host_address(bad)


def test_what_the_renderers_need() -> None:
    # a login-derived home directory is one plain path component or nothing
    assert login_path_key("jo.doe@example.com") == "jo.doe@example.com"
    assert login_path_key("john smith") == "john smith"  # an older login, still one component
    for bad in ("../../etc", "/", "..", ".", "a/b", "-rf", "a\nb", ""):
        with pytest.raises(NameRuleError):
            login_path_key(bad)
        assert not is_safe_path_component(bad)
    assert is_safe_path_component("10000-ubuntu.tar.zst")
    # a value after ``key =`` on one line of a configuration file
    assert is_safe_config_value("Escritorio de José")
    assert is_safe_config_value("old/name <b>")
    for bad in (LXC_HOOK, "a\tb", "a\rb", "a\u2028b", "a\u202eb", " x", "x ", "x" * 4097, 3):
        assert not is_safe_config_value(bad)
