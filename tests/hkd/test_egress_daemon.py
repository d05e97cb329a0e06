"""The HKD refuses to start with an egress it cannot enforce, before it touches the
node's network (throwaway PostgreSQL, fake backend; nothing is created)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import Hkd, HkdStartError
from tests.hkd.conftest import FakeVma, add_host, hkd_config


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"vm.network.bridge.manage": "0"}, "needs vm.network.bridge.manage"),
        (
            {"vm.network.bridge.manage": "1", "internal.vm.network.firewall.enable": "0"},
            "needs internal.vm.network.firewall.enable",
        ),
        (
            {"vm.network.bridge.manage": "1", "vm.network.egress.uplink": "eth0;reboot"},
            "is not an interface name",
        ),
        (
            {"vm.network.bridge.manage": "1", "vm.network.egress.uplink": ""},
            "uplink is empty",
        ),
        (
            {"vm.network.bridge.manage": "1", "vm.network.egress.deny": "the-lan"},
            "is not an IPv4 network",
        ),
    ],
)
def test_refuses_an_egress_it_cannot_enforce(
    db: DatabaseTarget, engine: Engine, run_dir: Path, values: dict[str, str], problem: str
) -> None:
    add_host(engine)
    config = hkd_config(
        run_dir,
        **{
            "vm.network.egress.enable": "1",
            "vm.network.egress.uplink": "eth0",
            "vm.network.bridge": "qvdegressno",
            **values,
        },
    )
    hkd = Hkd(config, backend=FakeBackend(), vma=FakeVma(), target=db)
    with pytest.raises(HkdStartError, match=problem):
        hkd.start()
    assert not Path("/sys/class/net/qvdegressno").exists()
