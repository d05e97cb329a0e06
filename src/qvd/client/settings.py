"""The client's configuration file, ``~/.config/qvd/client.conf`` (Java properties).

Keys are the original QVD client's ``client.*`` names; the command line overrides them:

    client.host.name = qvd.example.com      client.geometry = 1280x800
    client.host.port = 8443                 client.fullscreen = 0
    client.user.name = alice                client.link = adsl
    client.user.password = ...              client.keyboard = pc105/us
    client.ssl.allow_untrusted = 0          client.ssl.ca_file = /path/to/ca.pem
    client.file_sharing.enable = 1          client.share.1 = ~/Documents;ro

``client.share.<N> = <folder>[;ro|;rw]`` shares a local folder into the desktop's
``~/Redirected/<folder's name>`` (qvd.client.shares).

After a successful use the host, port and user are remembered in the same file: only
those lines are rewritten, comments and other keys stay as they were.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KNOWN_KEYS",
    "KNOWN_PREFIXES",
    "REMEMBERED",
    "ClientSettings",
    "SettingsError",
    "config_path",
    "load",
    "remember",
]

KNOWN_KEYS = frozenset(
    {
        "client.host.name",
        "client.host.port",
        "client.user.name",
        "client.user.password",
        "client.geometry",
        "client.fullscreen",
        "client.link",
        "client.keyboard",
        "client.ssl.allow_untrusted",
        "client.ssl.ca_file",
        # side channels (qvd.client.devices): the original client's names
        "client.printing.enable",  # default 1, as the original
        "client.printing.port",  # the local CUPS (default 631)
        "client.audio.enable",
        "client.audio.port",  # a local PulseAudio TCP port (default: loaded into yours)
        "client.audio.compression.enable",  # Opus on the media channel (default 0)
        "client.slave.enable",  # default 1: shared folders and USB need it
        "client.file_sharing.enable",
        "client.usb.enable",
        "client.usb.implementation",
        # a desktop folder opened on the client (qvd.client.slaveserver): default 0
        "client.share.from_desktop.enable",
        "client.share.from_desktop.path",  # where it is mounted (default ~/QVD/<name>)
    }
)
# ``client.share.<N>`` = a local folder shared into the desktop (``~/Redirected/<name>``)
# ``client.usb.share.<N>`` = a USB device shared with the desktop (busid or vendor:product)
KNOWN_PREFIXES = ("client.share.", "client.usb.share.")
REMEMBERED = ("client.host.name", "client.host.port", "client.user.name")

_HOST = re.compile(r"^[A-Za-z0-9.:\-\[\]]{1,253}$")
_USER = re.compile(r"^[^\x00-\x1f\x7f:]{1,128}$")
_GEOMETRY = re.compile(r"^\d{2,5}x\d{2,5}$")
_LINKS = frozenset({"modem", "isdn", "adsl", "wan", "lan", "local"})
_KEYBOARD = re.compile(r"^[\w/+\-]{1,64}$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_FLAGS = frozenset(
    {
        "client.fullscreen",
        "client.ssl.allow_untrusted",
        "client.printing.enable",
        "client.audio.enable",
        "client.audio.compression.enable",
        "client.slave.enable",
        "client.file_sharing.enable",
        "client.usb.enable",
        "client.share.from_desktop.enable",
    }
)


class SettingsError(ValueError):
    """A bad value, from the file (with its line) or the command line."""


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Values by ``client.*`` key, as read from the file (strings, validated)."""

    values: dict[str, str]

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def flag(self, key: str) -> bool | None:
        value = self.values.get(key)
        return None if value is None else value.strip().lower() in _TRUE


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "qvd" / "client.conf"


def check(key: str, value: str) -> str:
    """``value`` if it is acceptable for ``key``; SettingsError otherwise."""
    value = value.strip()
    ok = True
    if key == "client.host.name":
        ok = bool(_HOST.match(value))
    elif key == "client.host.port":
        ok = value.isdigit() and 0 < int(value) < 65536
    elif key == "client.user.name":
        ok = bool(_USER.match(value))
    elif key == "client.geometry":
        ok = bool(_GEOMETRY.match(value))
    elif key == "client.link":
        ok = value in _LINKS or bool(re.fullmatch(r"\d{1,7}[kKmM]?", value))
    elif key == "client.keyboard":
        ok = bool(_KEYBOARD.match(value))
    elif key in _FLAGS:
        ok = value.lower() in _TRUE | _FALSE
    elif key in ("client.printing.port", "client.audio.port"):
        ok = value == "" or (value.isdigit() and 0 < int(value) < 65536)
    elif key == "client.share.from_desktop.path":
        expanded = os.path.expanduser(value)
        ok = value == "" or (os.path.isabs(expanded) and "\x00" not in value)
    elif key.startswith("client.usb.share."):
        from qvd.client.usb import check_selection

        check_selection(value)  # SettingsError with the reason
    elif key.startswith("client.share."):
        from qvd.client.shares import parse_share

        parse_share(value)  # SettingsError with the reason
    elif key == "client.usb.implementation":
        ok = value.lower() == "usbip"
    if not ok:
        shown = "***" if key == "client.user.password" else repr(value[:80])
        raise SettingsError(f"{key}: {shown} is not a valid value")
    return value


def load(path: Path | None = None) -> ClientSettings:
    """The settings of the file (none if it does not exist); unknown keys are ignored."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ClientSettings({})
    except OSError as exc:
        raise SettingsError(f"{path}: {exc.strerror}") from None
    # the parser's package is imported only for a file that exists (start-up time)
    from qvd.config.errors import ConfigSyntaxError
    from qvd.config.properties import parse_properties

    try:
        entries = parse_properties(text, source=str(path))
    except ConfigSyntaxError as exc:
        raise SettingsError(str(exc)) from None
    values: dict[str, str] = {}
    for entry in entries:
        known = entry.key in KNOWN_KEYS or entry.key.startswith(KNOWN_PREFIXES)
        if known and entry.os_selector is None:
            try:
                values[entry.key] = check(entry.key, entry.value)
            except SettingsError as exc:
                raise SettingsError(f"{path}, line {entry.line}: {exc}") from None
    return ClientSettings(values)


def _escape(value: str) -> str:
    """``value`` as a properties value: a backslash (``DOMAIN\\user``) would start an escape
    or, at the end, join the next line to this one."""
    return value.replace("\\", "\\\\")


def remember(updates: dict[str, str], path: Path | None = None) -> None:
    """Write ``updates`` (keys of ``REMEMBERED``) into the file, keeping everything else."""
    path = path or config_path()
    for key, value in updates.items():
        if key not in REMEMBERED:
            raise SettingsError(f"{key} is not remembered")
        check(key, value)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = ["# qvd-client settings (Java properties, the original client's names)"]
    left = dict(updates)
    out: list[str] = []
    for line in lines:
        key = re.split(r"[\s=:]", line.strip(), maxsplit=1)[0]
        if key in left:
            out.append(f"{key} = {_escape(left.pop(key))}")
        else:
            out.append(line)
    out += [f"{key} = {_escape(value)}" for key, value in left.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
    tmp.chmod(0o600)  # it may hold client.user.password
    tmp.replace(path)
