"""The fencing order in the HKD's settings: a fence timeout that is not safely below
the lost-node timeout is refused at start with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.config import Config, ConfigError
from qvd.hkd.daemon import Hkd
from qvd.hkd.settings import FenceOrderError, HkdSettings, fence_jitter
from tests.hkd.conftest import hkd_config


@pytest.mark.parametrize(
    ("fence", "lost"),
    [("2", "1.5"), ("10", "3"), ("20", "20"), ("20", "22.5")],  # the first two: old tests
)
def test_a_fence_not_safely_below_the_lost_timeout_is_refused(
    run_dir: Path, fence: str, lost: str
) -> None:
    config = hkd_config(
        run_dir,
        **{
            "internal.hkd.agent.ticker.timeout": fence,
            "internal.hkd.cluster.node.timeout": lost,
            "internal.hkd.fence.kill_time": "2",
        },
    )
    with pytest.raises(FenceOrderError, match=r"must be below internal\.hkd\.cluster\.node"):
        HkdSettings.from_config(config)
    with pytest.raises(ConfigError, match="killed its VMs before its peers"):  # at start
        Hkd(config)


def test_the_defaults_and_the_test_configurations_keep_the_order(run_dir: Path) -> None:
    defaults = Config().with_overrides({"nodename": "n"})
    for config in (defaults, hkd_config(run_dir)):
        s = HkdSettings.from_config(config)
        assert s.ticker_timeout + s.fence_kill_time + fence_jitter(s.node_timeout) < s.node_timeout


def test_the_margin_is_exactly_the_kill_time_and_jitter(run_dir: Path) -> None:
    jitter = fence_jitter(10.0)
    ok = hkd_config(
        run_dir,
        **{
            "internal.hkd.agent.ticker.timeout": f"{10 - 1 - jitter - 0.01:.4f}",
            "internal.hkd.fence.kill_time": "1",
            "internal.hkd.cluster.node.timeout": "10",
        },
    )
    HkdSettings.from_config(ok)
    too_late = ok.with_overrides({"internal.hkd.agent.ticker.timeout": f"{10 - 1 - jitter:.4f}"})
    with pytest.raises(FenceOrderError):
        HkdSettings.from_config(too_late)


def test_the_upper_bound_is_read_and_a_negative_one_refused(run_dir: Path) -> None:
    assert HkdSettings.from_config(Config().with_overrides({"nodename": "n"})).overlay_size_mib == (
        2048
    )
    config = hkd_config(run_dir, **{"vm.overlay.size": "-1"})
    with pytest.raises(ConfigError, match=r"vm\.overlay\.size is -1"):
        HkdSettings.from_config(config)
