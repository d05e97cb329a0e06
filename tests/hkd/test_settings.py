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


def test_cpus_and_weight_are_read_with_the_qvd_alias(run_dir: Path) -> None:
    plain = HkdSettings.from_config(Config().with_overrides({"nodename": "n"}))
    assert (plain.vcpus, plain.cpu_weight) == (2, 100)
    # QVD's vm.kvm.cpus is vm.cpus's default, so an old configuration keeps working
    old = HkdSettings.from_config(hkd_config(run_dir, **{"vm.kvm.cpus": "3"}))
    assert old.vcpus == 3
    new = HkdSettings.from_config(hkd_config(run_dir, **{"vm.kvm.cpus": "3", "vm.cpus": "1"}))
    assert new.vcpus == 1


@pytest.mark.parametrize(
    ("token", "value", "reason"),
    [("vm.cpus", "0", r"vm\.cpus is 0"), ("vm.cpu.weight", "0", r"vm\.cpu\.weight is 0"),
     ("vm.cpu.weight", "10001", r"1\.\.10000")],
)  # fmt: skip
def test_cpus_and_weight_out_of_range_are_refused(
    run_dir: Path, token: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason):
        HkdSettings.from_config(hkd_config(run_dir, **{token: value}))
