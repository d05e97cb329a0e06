"""``qa``: the admin command line, a client of the API only."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import httpx

from qvd.cli.client import ApiClient, ClientError
from qvd.cli.commands import run_command
from qvd.cli.grammar import OBJECTS, GrammarError, parse
from qvd.cli.help import help_text
from qvd.cli.output import FORMATS, render, render_error
from qvd.cli.settings import QaSettings, load_settings

__all__ = ["main", "run"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qa", add_help=False)
    p.add_argument("-u", "--url")
    p.add_argument("-l", "--login")
    p.add_argument("-p", "--password")
    p.add_argument("-t", "--tenant")
    p.add_argument("-f", "--format", type=str.lower, choices=FORMATS)
    p.add_argument("--ca")
    p.add_argument("--insecure", action="store_const", const="1")
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
    transport: httpx.BaseTransport | None = None,
    environ: dict[str, str] | None = None,
) -> int:
    """Run one ``qa`` command line; returns the exit status."""
    env = dict(os.environ) if environ is None else environ
    try:
        opts = _parser().parse_args(list(argv))
    except SystemExit:
        return 2
    words = [w for w in opts.command if w not in ("-h", "--help")]
    if opts.help or len(words) < len(opts.command) or not words:
        out.write(help_text(words[0] if words else None, words[1] if len(words) > 1 else None))
        return 0 if (opts.help or len(words) < len(opts.command)) else 2
    if words[0] == "version":
        words = ["__version__"]
    settings = load_settings(
        {
            "url": opts.url,
            "login": opts.login,
            "password": opts.password or env.get("QA_PASSWORD"),
            "tenant": opts.tenant,
            "format": opts.format,
            "ca": opts.ca,
            "insecure": opts.insecure,
        },
        env,
    )
    try:
        with _client(settings, transport) as client:
            if words[0] == "__version__":
                info = client.info()
                out.write(f"database schema {info.get('version', {}).get('database')}\n")
                return 0
            if words[0] not in OBJECTS:
                err.write(f"qa: unknown object {words[0]!r}; try 'qa --help'\n")
                return 2
            command = parse(words[0], words[1:])
            outcome = run_command(client, command, block=settings.block)
    except GrammarError as exc:
        err.write(f"qa: {exc}\n")
        return 2
    except ClientError as exc:
        err.write(f"qa: {exc}\n")
        return 1
    if not outcome.reply.ok:
        render_error(outcome.reply, err)
        return 1
    render(outcome.reply, outcome.columns, settings.format, out, listing=outcome.listing)
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:], out=sys.stdout, err=sys.stderr))
