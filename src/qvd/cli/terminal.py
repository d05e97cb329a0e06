"""The person at the keyboard, if there is one: reading command lines, answers to
confirmations, and passwords (hidden with :mod:`getpass`).

When standard input is not a terminal, nothing is ever asked: confirmations are
refused (scripts say ``--force``), and secrets and lines are read from the input as
plain lines, so that ``printf 'password\\nnew\\nnew\\n' | qa`` works too.
"""

from __future__ import annotations

import contextlib
import getpass
import sys
from typing import TextIO

__all__ = ["Terminal"]


class Terminal:
    """Prompts on ``out``, answers from ``inp``."""

    def __init__(self, inp: TextIO, out: TextIO) -> None:
        self.inp = inp
        self.out = out
        self.tty = _isatty(inp)
        # input() gives line editing and history (readline) on the process's terminal.
        self._console = self.tty and inp is sys.stdin and out is sys.stdout

    def enable_line_editing(self) -> None:
        if self._console:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (importing it is what turns it on)

    def read_line(self, prompt: str = "") -> str | None:
        """One line without its newline, or ``None`` at end of input."""
        if self._console:
            try:
                return input(prompt)
            except EOFError:
                return None
        if prompt and self.tty:
            self.out.write(prompt)
            self.out.flush()
        line = self.inp.readline()
        return line.rstrip("\r\n") if line else None

    def ask(self, prompt: str) -> str | None:
        """A visible answer (a login name, a tenant)."""
        if self.tty:
            return self.read_line(prompt)
        return self.read_line()

    def ask_secret(self, prompt: str) -> str | None:
        """A hidden answer on a terminal; a plain line otherwise."""
        if self.tty:
            try:
                return getpass.getpass(prompt, stream=self.out)
            except EOFError:
                return None
        return self.read_line()

    def confirm(self, question: str) -> bool:
        """``question [y/N]`` on a terminal; never true without one."""
        if not self.tty:
            return False
        answer = self.read_line(f"{question} [y/N] ")
        return answer is not None and answer.strip().lower() in ("y", "yes")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
