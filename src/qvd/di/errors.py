"""Errors of the disk-image builder.

``DiError`` is the root; ``RecipeError`` means the recipe itself is wrong (nothing was
built), ``BuildError`` names the build step that failed and why.
"""

from __future__ import annotations

__all__ = ["BuildError", "DiError", "RecipeError"]


class DiError(Exception):
    """Anything the disk-image builder reports."""


class RecipeError(DiError):
    """A recipe is missing, unreadable or invalid."""


class BuildError(DiError):
    """A build step failed: ``step`` says which, ``reason`` why, ``log_tail`` the last output."""

    def __init__(self, step: str, reason: str, log_tail: str = "") -> None:
        self.step = step
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"step {step!r} failed: {reason}")
