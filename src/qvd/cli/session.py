"""One ``qa`` session: runs command lines (split into words) against one API client,
the same way in one-shot and interactive mode, and says how each one went (the exit
status: 0 done, 1 refused or failed, 2 usage error).

Besides ``<object> … <verb> …`` it knows the session commands of qa4: ``login``,
``logout``, ``password``, ``block`` (page size), ``usage``/``help`` and ``version``.
``login``, ``logout`` and ``block`` only make sense in interactive mode.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TextIO

from qvd import __version__
from qvd.cli.client import ApiClient, ApiReply, ClientError, Credentials
from qvd.cli.commands import Confirm, Outcome, Refused, run_command
from qvd.cli.grammar import OBJECTS, GrammarError, parse
from qvd.cli.help import help_text
from qvd.cli.output import FORMATS, render, render_error
from qvd.cli.terminal import Terminal

__all__ = ["MAX_BLOCK", "CliSession"]

MAX_BLOCK = 10000
_INTERACTIVE_ONLY = ("login", "logout", "block")
_HELP_FLAGS = ("-h", "--help")


class CliSession:
    """Runs commands; owns the presentation (format, page size) and the prompts."""

    def __init__(
        self,
        client: ApiClient,
        term: Terminal,
        *,
        out: TextIO,
        err: TextIO,
        fmt: str = "table",
        block: int = 25,
        force: bool = False,
        interactive: bool = False,
    ) -> None:
        self.client = client
        self.term = term
        self.out = out
        self.err = err
        self.format = fmt
        self.block = block
        self.force = force
        self.interactive = interactive

    # credentials -----------------------------------------------------------------------

    def ask_credentials(self, creds: Credentials) -> Credentials:
        """What is missing, asked on the terminal (the password hidden)."""
        login, tenant, password = creds.login, creds.tenant, creds.password
        if not login:
            login = (self.term.ask("Login: ") or "").strip() or None
            if login and not tenant and self._multitenant():
                tenant = (self.term.ask("Tenant: ") or "").strip() or None
        if login and password is None:
            password = self.term.ask_secret(f"Password for {login}: ")
        return Credentials(login=login, password=password, tenant=tenant)

    def _multitenant(self) -> bool:
        try:
            return bool(self.client.info().get("multitenant", 1))
        except ClientError:
            return True

    def close(self) -> None:
        """End the API session, if one is open."""
        if self.client.logged_in:
            with contextlib.suppress(ClientError):
                self.client.logout()

    # one command line ------------------------------------------------------------------

    def execute(self, words: list[str]) -> int:
        """Run one command line; the exit status."""
        force = "--force" in words
        wants_help = any(w in _HELP_FLAGS for w in words)
        words = [w for w in words if w not in (*_HELP_FLAGS, "--force")]
        fmt = self.format
        if len(words) > 1 and words[0] in ("-f", "--format"):  # a shell line's own format
            fmt, words = words[1].lower(), words[2:]
            if fmt not in FORMATS:
                self.err.write(f"qa: the format is one of {', '.join(FORMATS)}, not {fmt!r}\n")
                return 2
        if not words:
            self.out.write(help_text())
            return 0 if wants_help else 2
        head = words[0]
        if wants_help or head in ("usage", "help"):
            rest = words if wants_help else words[1:]
            self.out.write(help_text(*rest[:2]))
            return 0
        saved, self.format = self.format, fmt
        try:
            return self._execute(head, words[1:], force)
        except GrammarError as exc:
            self.err.write(f"qa: {exc}\n")
            return 2
        except (ClientError, Refused) as exc:
            self.err.write(f"qa: {exc}\n")
            return 1
        finally:
            self.format = saved

    def _execute(self, head: str, rest: list[str], force: bool) -> int:
        if head in _INTERACTIVE_ONLY and not self.interactive:
            raise GrammarError(f"'{head}' is for the interactive mode (run qa without a command)")
        if head == "version":
            return self._version()
        if head == "login":
            return self._login(rest)
        if head == "logout":
            return self._logout()
        if head == "password":
            return self._password()
        if head == "block":
            return self._block(rest)
        if head in ("quit", "exit", "shell"):
            where = "this is it" if self.interactive else "run qa without a command"
            raise GrammarError(f"'{head}' is for the interactive mode ({where})")
        if head not in OBJECTS:
            raise GrammarError(f"unknown object or command {head!r}; try 'usage'")
        command = parse(head, rest)
        confirm = Confirm(
            force=self.force or force, ask=self.term.confirm if self.term.tty else None
        )
        outcome = run_command(self.client, command, block=self.block, confirm=confirm)
        if not outcome.reply.ok:
            return self._failed(outcome.reply)
        if outcome.listing:
            return self._show_listing(outcome)
        render(outcome.reply, outcome.columns, self.format, self.out, listing=False)
        return 0

    def _failed(self, reply: ApiReply) -> int:
        render_error(reply, self.err)
        return 1

    # listings --------------------------------------------------------------------------

    def _show_listing(self, outcome: Outcome) -> int:
        """Every page in one table for scripts; page by page on a terminal."""
        reply = outcome.reply
        total = reply.total if reply.total is not None else len(reply.rows)
        more = outcome.more
        if more is None or len(reply.rows) >= total or not reply.rows:
            render(reply, outcome.columns, self.format, self.out, listing=True)
            return 0
        if self.term.tty and self.format == "table":
            return self._page(outcome, total)
        rows = list(reply.rows)
        page = 1
        while len(rows) < total:
            page += 1
            nxt = more(page)
            if not nxt.ok:
                return self._failed(nxt)
            if not nxt.rows:
                break
            rows += nxt.rows
        whole = replace(reply, rows=rows, total=total)
        render(whole, outcome.columns, self.format, self.out, listing=True)
        return 0

    def _page(self, outcome: Outcome, total: int) -> int:
        assert outcome.more is not None
        reply, page, shown = outcome.reply, 1, 0
        pages = -(-total // max(outcome.block, 1))
        while True:
            first, shown = shown + 1, shown + len(reply.rows)
            footer = f"Total: {total} (page {page} of {pages}: rows {first}-{shown})"
            render(reply, outcome.columns, self.format, self.out, listing=True, footer=footer)
            if shown >= total or not reply.rows:
                return 0
            answer = self.term.read_line("-- Enter: next page, q: stop -- ")
            if answer is None or answer.strip().lower() in ("q", "quit", "n", "no"):
                return 0
            page += 1
            reply = outcome.more(page)
            if not reply.ok:
                return self._failed(reply)

    # session commands ------------------------------------------------------------------

    def _version(self) -> int:
        self.out.write(f"qa (QVD admin CLI) {__version__}\n")
        info = self.client.info()
        database = (info.get("version") or {}).get("database")
        mode = "multitenant" if info.get("multitenant") else "monotenant"
        hypervisor = info.get("hypervisor") or "?"
        self.out.write(
            f"API: database schema {database}, {mode}, hypervisor {hypervisor}, "
            f"server time {info.get('server_datetime')}\n"
        )
        return 0

    def _login(self, rest: list[str]) -> int:
        if len(rest) > 2:
            raise GrammarError("login [<name> [<tenant>]]")
        name = rest[0] if rest else None
        tenant = rest[1] if len(rest) > 1 else None
        if name is None:
            name = (self.term.ask("Login: ") or "").strip() or None
        if not name:
            raise GrammarError("login needs an administrator's name")
        if tenant is None and self._multitenant():
            tenant = (self.term.ask("Tenant: ") or "").strip() or None
        password = self.term.ask_secret(f"Password for {name}: ")
        if password is None:
            raise Refused("no password given: not logged in")
        self.close()
        self.client.set_credentials(Credentials(login=name, password=password, tenant=tenant))
        reply = self.client.login()
        if not reply.ok:
            self.client.set_credentials(replace(self.client.credentials, password=None))
            return self._failed(reply)
        where = f" (tenant {self.client.me.get('tenant_name', tenant)})" if tenant else ""
        self.out.write(f"Logged in as {name}{where}\n")
        return 0

    def _logout(self) -> int:
        if not self.client.logged_in:
            self.out.write("Not logged in\n")
            return 0
        reply = self.client.logout()
        if not reply.ok:
            return self._failed(reply)
        self.out.write("Logged out\n")
        return 0

    def _password(self) -> int:
        current = self.term.ask_secret("Current password: ")
        new = self.term.ask_secret("New password: ") if current is not None else None
        again = self.term.ask_secret("New password again: ") if new is not None else None
        if current is None or new is None or again is None:
            raise Refused("password not changed")
        if new != again:
            raise Refused("the two passwords differ: password not changed")
        if not new:
            raise Refused("an empty password is not allowed: password not changed")
        reply = self.client.action(
            "myadmin_update", arguments={"password": new, "current_password": current}
        )
        if not reply.ok:
            return self._failed(reply)
        self.client.credentials = replace(self.client.credentials, password=new)
        self.out.write("Password changed\n")
        return 0

    def _block(self, rest: list[str]) -> int:
        if not rest:
            self.out.write(f"Page size: {self.block}\n")
            return 0
        if len(rest) > 1 or not rest[0].isdigit() or not 1 <= int(rest[0]) <= MAX_BLOCK:
            raise GrammarError(f"block <n>: a page size from 1 to {MAX_BLOCK}")
        self.block = int(rest[0])
        self.out.write(f"Page size: {self.block}\n")
        return 0
