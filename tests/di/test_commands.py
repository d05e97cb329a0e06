"""Running the build's tools: a failure names the step and shows the tool's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.di import BuildError
from qvd.di.commands import run_tool


def test_a_failing_tool_names_the_step_and_shows_its_output(tmp_path: Path) -> None:
    with open(tmp_path / "log", "w") as log, pytest.raises(BuildError) as failed:
        run_tool(
            ["sh", "-c", "echo fetching; echo 'E: no such package' >&2; exit 3"],
            step="bootstrap",
            log=log,
        )
    assert failed.value.step == "bootstrap"
    assert "status 3" in failed.value.reason
    assert "E: no such package" in failed.value.log_tail
    assert "fetching" in (tmp_path / "log").read_text()
    with open(tmp_path / "log", "w") as log, pytest.raises(BuildError, match="cannot run"):
        run_tool(["/nonexistent/tool"], step="pack", log=log)
