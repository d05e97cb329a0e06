"""The client's settings file (the original client's ``client.*`` names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.client import settings
from qvd.client.main import parse_args, resolve


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "client.conf"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_gives_defaults_and_the_command_line_wins(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# my QVD\nclient.host.name = qvd.example.com\nclient.host.port: 9443\n"
        "client.user.name=alice\nclient.geometry = 1280x800\nclient.fullscreen = 1\n"
        "client.link = lan\nclient.keyboard = pc105/es\nclient.ssl.allow_untrusted = 1\n"
        "client.something.else = ignored\n",
    )
    conf = settings.load(path)
    assert conf.get("client.host.name") == "qvd.example.com"
    assert "client.something.else" not in conf.values
    opts = resolve(parse_args([]), conf)
    assert (opts.host, opts.port, opts.user) == ("qvd.example.com", 9443, "alice")
    assert (opts.geometry, opts.fullscreen, opts.link, opts.keyboard) == (
        "1280x800", True, "lan", "pc105/es",
    )  # fmt: skip
    assert opts.insecure
    args = parse_args(
        ["--host", "10.0.0.5", "--user", "bob", "--geometry", "800x600", "--window", "--link",
         "adsl", "--port", "8443"]
    )  # fmt: skip
    opts = resolve(args, conf)
    assert (opts.host, opts.port, opts.user, opts.geometry) == ("10.0.0.5", 8443, "bob", "800x600")
    assert opts.fullscreen is False
    assert opts.link == "adsl"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("client.geometry = big", "client.geometry"),
        ("client.host.port = 70000", "client.host.port"),
        ("client.host.name = evil host;rm", "client.host.name"),
        ("client.link = warp", "client.link"),
        ("client.keyboard = pc105/us,listen=1", "client.keyboard"),
    ],
)
def test_bad_values_name_the_key_and_the_line(tmp_path: Path, line: str, key: str) -> None:
    path = write(tmp_path, f"# first\n{line}\n")
    with pytest.raises(settings.SettingsError, match=f"line 2: {key}"):
        settings.load(path)


def test_bad_values_on_the_command_line_are_refused_too() -> None:
    with pytest.raises(settings.SettingsError, match=r"client\.geometry"):
        resolve(parse_args(["--host", "h", "--user", "u", "--geometry", "1024x768+0+0"]),
                settings.ClientSettings({}))  # fmt: skip
    with pytest.raises(settings.SettingsError, match="no host"):
        resolve(parse_args(["--user", "u"]), settings.ClientSettings({}))


def test_remember_rewrites_only_its_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "# keep me\nclient.geometry = 1280x800\nclient.host.name=old\n")
    settings.remember({"client.host.name": "new.example", "client.user.name": "carol"}, path)
    assert path.read_text().splitlines() == [
        "# keep me",
        "client.geometry = 1280x800",
        "client.host.name = new.example",
        "client.user.name = carol",
    ]
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(settings.SettingsError):
        settings.remember({"client.user.name": "bad\nclient.host.name = x"}, path)


def test_a_missing_file_is_no_settings(tmp_path: Path) -> None:
    assert settings.load(tmp_path / "nothing.conf").values == {}


@pytest.mark.parametrize("user", ["DOMAIN\\alice", "alice\\", "a\\nclient.ssl.allow_untrusted=1"])
def test_remembered_backslashes_come_back_as_written(tmp_path: Path, user: str) -> None:
    # unescaped, "DOMAIN\alice" would come back as "DOMAINalice" and a trailing backslash
    # would join the next line (here: the untrusted flag) to the user name
    path = write(tmp_path, "client.user.name = old\nclient.ssl.allow_untrusted = 0\n")
    settings.remember({"client.user.name": user}, path)
    conf = settings.load(path)
    assert conf.get("client.user.name") == user
    assert conf.get("client.ssl.allow_untrusted") == "0"
