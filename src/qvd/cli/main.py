"""``qa``: the admin command line, a client of the API only.

``qa <object> … <verb> …`` runs one command; ``qa`` alone (or ``qa shell``) reads
commands line by line (:mod:`qvd.cli.shell`)."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import httpx

from qvd.cli.client import ApiClient
from qvd.cli.help import help_text
from qvd.cli.output import FORMATS
from qvd.cli.session import CliSession
from qvd.cli.settings import QaSettings, load_settings
from qvd.cli.shell import run_shell
from qvd.cli.terminal import Terminal

__all__ = ["main", "run"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qa", add_help=False)
    p.add_argument("-u", "--url")
    p.add_argument("-l", "--login")
    p.add_argument("-p", "--password")
    p.add_argument("-t", "--tenant")
    p.add_argument("-f", "--format", type=str.lower, choices=FORMATS)
    p.add_argument("--csv", dest="format", action="store_const", const="csv")
    p.add_argument("--ca")
    p.add_argument("--insecure", action="store_const", const="1")
    p.add_argument("--force", action="store_const", const="1")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER)
    return p


def _client(settings: QaSettings, transport: httpx.BaseTransport | None) -> ApiClient:
    verify: bool | str = False if settings.insecure else (settings.ca or True)
    return ApiClient(
        settings.url,
        login=settings.login,
        password=settings.password,
        tenant=settings.tenant,
        verify=verify,
        transport=transport,
    )


def run(
    argv: Sequence[str],
    *,
    out: TextIO,
    err: TextIO,
    inp: TextIO | None = None,
    transport: httpx.BaseTransport | None = None,
    environ: dict[str, str] | None = None,
) -> int:
    """Run ``qa`` with these arguments; returns the exit status. ``inp`` is where
    interactive commands, confirmations and passwords come from (none: empty)."""
    env = dict(os.environ) if environ is None else environ
    try:
        opts = _parser().parse_args(list(argv))
    except SystemExit:
        return 2
    words: list[str] = list(opts.command)
    if words and words[-1] == "--csv":  # ``qa session get … --csv``
        words.pop()
        opts.format = "csv"
    if opts.help and not words:
        out.write(help_text())
        return 0
    settings = load_settings(
        {
            "url": opts.url,
            "login": opts.login,
            "password": opts.password or env.get("QA_PASSWORD"),
            "tenant": opts.tenant,
            "format": opts.format,
            "ca": opts.ca,
            "insecure": opts.insecure,
            "force": opts.force,
        },
        env,
    )
    if settings.format not in FORMATS:
        err.write(f"qa: qa.format is one of {', '.join(FORMATS)}, not {settings.format!r}\n")
        return 2
    term = Terminal(inp if inp is not None else io.StringIO(""), out)
    interactive = not words or words == ["shell"]
    with _client(settings, transport) as client:
        session = CliSession(
            client,
            term,
            out=out,
            err=err,
            fmt=settings.format,
            block=settings.block,
            force=settings.force,
            interactive=interactive,
        )
        if term.tty:
            client.ask = session.ask_credentials
        if interactive:
            return run_shell(session, term, settings.url, err)
        try:
            return session.execute(words + (["--help"] if opts.help else []))
        finally:
            session.close()


def main() -> None:
    try:
        status = run(sys.argv[1:], out=sys.stdout, err=sys.stderr, inp=sys.stdin)
    except KeyboardInterrupt:
        sys.stderr.write("\nqa: interrupted\n")
        status = 130
    sys.exit(status)
