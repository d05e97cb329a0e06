"""The systemd units of a node (``packaging/systemd/*.service``): rendered with this
machine's values and, when systemd is PID 1, installed and started.

A template's ``@NAME@`` placeholders take absolute paths, a port or a user name, each
checked against a strict pattern before it goes into the unit (a unit file is a
command line: no value is spliced raw into it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from qvd.config import Config

__all__ = [
    "UNIT_NAMES",
    "UnitError",
    "install_units",
    "render_unit",
    "render_units",
    "systemd_is_running",
    "template_dir",
    "unit_values",
]

UNIT_NAMES = ("qvd-postgresql.service", "qvd-hkd.service", "qvd-api.service")
_PLACEHOLDER = re.compile(r"@([A-Z]+)@")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")
_SAFE_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")  # never an option (-x)
_PORT = re.compile(r"[0-9]{1,5}")
_KIND = {"PGUSER": _SAFE_WORD, "PGPORT": _PORT}


class UnitError(ValueError):
    """A unit that cannot be rendered or installed (the message says why)."""


def template_dir() -> Path:
    """Where the unit templates are (the source tree's packaging/systemd)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "packaging" / "systemd"
        if (candidate / "qvd-hkd.service").exists():
            return candidate
    raise UnitError("the systemd unit templates (packaging/systemd) are not installed")


def systemd_is_running(run: Path = Path("/run/systemd/system")) -> bool:
    """sd_booted(): PID 1 is systemd."""
    return run.is_dir()


def qvd_executable() -> Path:
    """The ``qvd`` command of this installation (beside the running interpreter)."""
    beside = Path(sys.executable).with_name("qvd")
    return beside if beside.exists() else Path("/usr/bin/qvd")


def unit_values(config: Config, config_path: Path) -> dict[str, str]:
    """The placeholders' values for this node."""
    return {
        "QVD": str(qvd_executable()),
        "CONFIG": str(config_path.resolve()),
        "RUNDIR": str(config.get_path("path.run")),
        "APICERTS": str(config.get_path("path.api.ssl.cert").parent),
        "PGUSER": config.get("database.embedded.os_user"),
        "PGBIN": str(config.get_path("database.embedded.bin")),
        "PGDATA": str(config.get_path("path.database")),
        "PGSOCKET": str(config.get_path("path.database.socket")),
        "PGPORT": str(config.get_int("database.embedded.port")),
    }


def render_unit(template: str, values: Mapping[str, str]) -> str:
    """``template`` with its placeholders replaced by checked values."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise UnitError(f"no value for @{name}@")
        text = values[name]
        pattern = _KIND.get(name, _SAFE_PATH)
        if not pattern.fullmatch(text) or "/../" in f"{text}/":
            raise UnitError(f"@{name}@: {text!r} cannot go into a unit file")
        return text

    lines = []
    for line in template.splitlines():
        # comments keep their placeholders' names; SystemCallFilter=@set is systemd's own
        if line.lstrip().startswith("#") or line.startswith("SystemCallFilter="):
            lines.append(line)
        else:
            lines.append(_PLACEHOLDER.sub(value, line))
    return "\n".join(lines) + "\n"


def render_units(config: Config, config_path: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The units ``names`` rendered for this node (name -> text)."""
    values = unit_values(config, config_path)
    rendered = {}
    for name in names:
        if name not in UNIT_NAMES:
            raise UnitError(f"{name}: not a QVD unit ({', '.join(UNIT_NAMES)})")
        rendered[name] = render_unit((template_dir() / name).read_text(), values)
    return rendered


def install_units(
    config: Config,
    config_path: Path,
    names: tuple[str, ...],
    say: Callable[[str], None],
    *,
    unit_dir: Path = Path("/etc/systemd/system"),
    start: bool = True,
) -> list[Path]:
    """Write the units ``names`` into ``unit_dir`` (0644), reload systemd, and enable
    and start them (``start``)."""
    written = []
    for name, text in render_units(config, config_path, names).items():
        path = unit_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        written.append(path)
        say(f"installed {path}")
    if start:
        for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", *names]):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise UnitError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
        say(f"started {', '.join(names)} (journalctl -u qvd-hkd shows its log)")
    return written
