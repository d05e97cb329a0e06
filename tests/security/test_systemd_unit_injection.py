"""systemd unit injection: ``qvd node units`` / ``qvd node join`` render the unit files
with values from node.conf (paths, the PostgreSQL user, its port). A value with a line
break would add a directive of its own (``ExecStartPre=`` runs as root), a ``%`` or
``$`` is expanded by systemd, a ``..`` walks out of the directory, a leading ``-`` turns
a user name into an option of ``install -o``: each is refused with a clear error and no
unit file is written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qvd.config import config_from_text
from qvd.node.units import UNIT_NAMES, UnitError, render_units

EVIL = {
    "a line break adds a directive": (
        r"database.embedded.os_user = postgres\nExecStartPre=+/bin/sh -c id"
    ),
    "a systemd specifier": "path.run = /run/%u/qvd",
    "a variable expansion": "path.run = /run/$HOME",
    "a path walking out": "path.database = /var/lib/qvd/../../../etc",
    "a user name that is an option": "database.embedded.os_user = -v",
    "blanks split the command line": "database.embedded.bin = /usr/lib/postgresql/16/bin -c x",
}


@pytest.mark.parametrize("line", EVIL.values(), ids=EVIL.keys())
def test_a_hostile_node_conf_value_is_refused_by_the_cli(tmp_path: Path, line: str) -> None:
    conf = tmp_path / "node.conf"
    conf.write_text(line + "\n")
    out = tmp_path / "units"
    env = {k: v for k, v in os.environ.items() if k != "QVD_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "qvd", "node", "units", "--output", str(out), "--config",
         str(conf)],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "cannot go into a unit file" in done.stderr, done.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


@pytest.mark.parametrize("line", EVIL.values(), ids=EVIL.keys())
def test_a_hostile_value_never_reaches_a_rendered_unit(tmp_path: Path, line: str) -> None:
    cfg = config_from_text(line + "\n")
    with pytest.raises(UnitError, match="cannot go into a unit file"):
        render_units(cfg, tmp_path / "node.conf", UNIT_NAMES)


def test_the_defaults_render(tmp_path: Path) -> None:
    """The guard refuses only what it must: the shipped defaults render every unit."""
    rendered = render_units(config_from_text(""), tmp_path / "node.conf", UNIT_NAMES)
    assert set(rendered) == set(UNIT_NAMES)
    for text in rendered.values():
        directives = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
        assert not [ln for ln in directives if re.search(r"@[A-Z]+@", ln)], text
