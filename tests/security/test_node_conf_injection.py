"""node.conf injection: a value that ``qvd node join`` writes (a password from the
database's side, a name) cannot add a line, a key or an escape of its own; the file is
0600 and reads back exactly as written."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from qvd.config import load_config
from qvd.node.nodeconf import NodeConfError, merge_node_conf


@pytest.mark.parametrize(
    "evil",
    ["pw\nnodename = evil", "pw\rvm.hypervisor = kvm", "pw\u2028x = y", "pw\x00", "pw\x1b[2J"],
)
def test_a_line_break_or_control_character_is_refused(tmp_path: Path, evil: str) -> None:
    conf = tmp_path / "node.conf"
    with pytest.raises(NodeConfError, match=r"database\.password"):
        merge_node_conf(conf, {"nodename": "n1", "database.password": evil}, header="t")
    assert not conf.exists()


def test_escapes_and_blanks_round_trip_exactly(tmp_path: Path) -> None:
    conf = tmp_path / "node.conf"
    conf.write_text("vm.hypervisor = lxc\nnodename = old\n")
    tricky = " \\u0041 # not a comment \\ = : "
    merge_node_conf(conf, {"nodename": "n1", "database.password": tricky}, header="t")
    cfg = load_config(conf)
    assert cfg.get("database.password") == tricky
    assert cfg.get("nodename") == "n1"
    assert cfg.get("vm.hypervisor") == "lxc"  # the other settings are kept
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600


def test_only_known_tokens_are_written(tmp_path: Path) -> None:
    with pytest.raises(NodeConfError, match="not a configuration token"):
        merge_node_conf(tmp_path / "node.conf", {"no.such.token": "x"}, header="t")
