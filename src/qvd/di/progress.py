"""Progress reports of a build, and pure parsers that turn tool output into fractions.

A build is a list of weighted steps. ``StepPlan`` turns "step k is f done" into an
overall percentage; ``DebootstrapMeter`` and ``AptMeter`` read the output lines of
debootstrap and of ``apt-get -o APT::Status-Fd=1`` and say how far they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "AptMeter",
    "DebootstrapMeter",
    "Progress",
    "ProgressSink",
    "StepPlan",
    "TarMeter",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """One progress report: which step (1-based ``index`` of ``total``), overall percent."""

    step: str
    index: int
    total: int
    percent: float
    message: str

    def render(self) -> str:
        return f"[{self.index}/{self.total} {self.step}] {self.percent:5.1f}% {self.message}"


ProgressSink = Callable[[Progress], None]


class StepPlan:
    """Weighted steps; reports overall percentages to a sink, never going backwards."""

    def __init__(self, steps: Sequence[tuple[str, float]], sink: ProgressSink | None) -> None:
        self._steps = list(steps)
        self._total = sum(w for _, w in self._steps) or 1.0
        self._sink = sink
        self._last = 0.0
        self.current = self._steps[0][0] if self._steps else ""

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._steps]

    def report(self, step: str, fraction: float, message: str) -> None:
        index = self.names.index(step)
        self.current = step
        done = sum(w for _, w in self._steps[:index])
        weight = self._steps[index][1]
        fraction = min(max(fraction, 0.0), 1.0)
        percent = max(self._last, 100.0 * (done + weight * fraction) / self._total)
        self._last = percent
        if self._sink is not None:
            self._sink(
                Progress(
                    step=step,
                    index=index + 1,
                    total=len(self._steps),
                    percent=round(percent, 1),
                    message=message,
                )
            )


class DebootstrapMeter:
    """Fraction done of a debootstrap run, from its ``I:`` lines.

    Downloading counts for 35 %, extracting 10 %, unpacking and configuring 55 %. Until
    the downloads end, the number of packages is the ``expected`` estimate.
    """

    def __init__(self, expected: int = 200) -> None:
        self.expected = max(expected, 1)
        self.retrieved = 0
        self.extracted = 0
        self.installed = 0
        self.total: int | None = None
        self.fraction = 0.0

    def feed(self, line: str) -> float | None:
        """Update from one output line; the new fraction, or None if the line says nothing."""
        if not line.startswith("I: "):
            return None
        words = line[3:].split()
        if not words:
            return None
        verb = words[0]
        if verb == "Retrieving" and len(words) == 3:  # "Retrieving <package> <version>"
            self.retrieved += 1
            value = 0.35 * min(self.retrieved / self.expected, 0.99)
        elif verb == "Extracting" and len(words) == 2:
            if self.total is None:
                self.total = max(self.retrieved, 1)
            self.extracted += 1
            value = 0.35 + 0.10 * min(self.extracted / self.total, 1.0)
        elif verb in ("Unpacking", "Configuring") and len(words) == 2:
            total = self.total or self.expected
            self.installed += 1
            value = 0.45 + 0.55 * min(self.installed / (2 * total), 0.99)
        elif line.startswith("I: Base system installed successfully"):
            value = 1.0
        else:
            return None
        self.fraction = max(self.fraction, value)
        return self.fraction


class AptMeter:
    """Fraction done of ``apt-get install`` from its plain output.

    ``N newly installed`` gives the package count; each ``Get:`` line is a download
    (40 %), each ``Unpacking``/``Setting up`` line half of one package's install (60 %).
    """

    def __init__(self) -> None:
        self.total = 0
        self.downloads = 0
        self.installs = 0
        self.fraction = 0.0

    def feed(self, line: str) -> float | None:
        words = line.split()
        if "newly" in words and "installed," in words:
            with contextlib.suppress(ValueError, IndexError):
                self.total = int(words[words.index("newly") - 1].rstrip(","))
            return None
        if not self.total:
            return None
        if line.startswith("Get:"):
            self.downloads += 1
            value = 0.4 * min(self.downloads / self.total, 1.0)
        elif line.startswith(("Unpacking ", "Setting up ")):
            self.installs += 1
            value = 0.4 + 0.6 * min(self.installs / (2 * self.total), 1.0)
        else:
            return None
        self.fraction = max(self.fraction, value)
        return self.fraction


class TarMeter:
    """Fraction done of a tar run with ``--checkpoint=N --checkpoint-action=echo=ckpt %u``."""

    RECORD = 10240

    def __init__(self, total_bytes: int, every: int) -> None:
        self.total_bytes = max(total_bytes, 1)
        self.every = every

    def feed(self, line: str) -> float | None:
        marker = line.rfind("ckpt ")
        if marker < 0:
            return None
        try:
            count = int(line[marker + 5 :].split()[0])
        except (ValueError, IndexError):
            return None
        return min(count * self.every * self.RECORD / self.total_bytes, 0.99)
