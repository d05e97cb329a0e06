"""``qa`` with no command (or ``qa shell``): one command per line, read from a
prompt on a terminal (with line editing when :mod:`readline` is there) or from piped
input (``printf 'vm get\\n' | qa``), all in one API session.

A failing command is reported and the next line is read; the session ends at
``quit``, ``exit`` or the end of input, logging out of the API. The exit status is 0
when every command succeeded, else the status of the last one that failed.
"""

from __future__ import annotations

import shlex
from typing import TextIO

from qvd import __version__
from qvd.cli.session import CliSession
from qvd.cli.terminal import Terminal

__all__ = ["PROMPT", "run_shell"]

PROMPT = "qa> "
_QUIT = ("quit", "exit", "q")


def run_shell(session: CliSession, term: Terminal, url: str, err: TextIO) -> int:
    """Read and run command lines until the end; the exit status."""
    term.enable_line_editing()
    if term.tty:
        who = session.client.credentials.login
        term.out.write(
            f"qa {__version__}: QVD administration on {url}"
            + (f" as {who}" if who else "; 'login' to log in")
            + ". 'usage' for help, 'quit' to leave.\n"
        )
    status = 0
    try:
        while True:
            try:
                line = term.read_line(PROMPT)
            except KeyboardInterrupt:
                term.out.write("\n")
                continue
            if line is None:
                if term.tty:
                    term.out.write("\n")
                break
            code = _one_line(session, line, err)
            if code is None:
                break
            if code:
                status = code
            term.out.flush()
    finally:
        session.close()
    return status


def _one_line(session: CliSession, line: str, err: TextIO) -> int | None:
    """Run one line: its status, or ``None`` to leave."""
    line = line.strip()
    if not line or line.startswith("#"):
        return 0
    try:
        words = shlex.split(line)
    except ValueError as exc:
        err.write(f"qa: {exc}\n")
        return 2
    if words[0] in _QUIT and len(words) == 1:
        return None
    try:
        return session.execute(words)
    except KeyboardInterrupt:
        err.write("qa: interrupted\n")
        return 1
    except Exception as exc:  # a bug must not end the session the admin is in
        err.write(f"qa: unexpected {type(exc).__name__}: {exc}\n")
        return 1
