"""The build's progress meters and the step plan (pure)."""

from __future__ import annotations

import pytest

from qvd.di import Progress
from qvd.di.progress import AptMeter, DebootstrapMeter, StepPlan, TarMeter


def test_debootstrap_meter_moves_forward_to_one() -> None:
    meter = DebootstrapMeter(expected=4)
    lines = ["I: Retrieving InRelease", "I: Retrieving Packages"]
    lines += [f"I: Retrieving p{i} 1.0" for i in range(3)]
    lines += [f"I: Extracting p{i}..." for i in range(3)]
    lines += ["I: Unpacking required packages..."]
    lines += [f"I: Unpacking p{i}:amd64..." for i in range(3)]
    lines += [f"I: Configuring p{i}:amd64..." for i in range(3)]
    lines += ["I: Base system installed successfully."]
    seen = [f for f in (meter.feed(line) for line in lines) if f is not None]
    assert seen == sorted(seen)
    assert seen[-1] == 1.0
    assert meter.total == 3
    assert meter.feed("W: something") is None


def test_apt_and_tar_meters() -> None:
    apt = AptMeter()
    assert apt.feed("0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.") is None
    assert apt.feed("Get:1 http://deb.debian.org/debian bookworm/main a 1") == 0.2
    assert apt.feed("Get:2 http://deb.debian.org/debian bookworm/main b 1") == 0.4
    assert apt.feed("Unpacking a (1) ...") == pytest.approx(0.55)
    assert apt.feed("Setting up b (1) ...") == pytest.approx(0.7)
    tar = TarMeter(total_bytes=10240 * 1000, every=500)
    assert tar.feed("tar: ckpt 1") == 0.5
    assert tar.feed("garbage") is None


def test_step_plan_reports_overall_percentages() -> None:
    seen: list[Progress] = []
    plan = StepPlan([("a", 1.0), ("b", 3.0)], seen.append)
    plan.report("a", 1.0, "done a")
    plan.report("b", 0.5, "half b")
    plan.report("b", 0.1, "late line")
    assert [p.percent for p in seen] == [25.0, 62.5, 62.5]
    assert seen[1].render() == "[2/2 b]  62.5% half b"
    assert plan.current == "b"
