"""Fixtures for end-to-end CLI tests: the API fixtures (real database, a world of two
tenants), ``qa`` run in-process against the app (:class:`Qa`), and the API served
over TLS on a loopback port for the real ``qa`` program (:class:`LiveApi`)."""

from __future__ import annotations

import io
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio.from_thread
import pytest
from sqlalchemy import Engine

from qvd.api import api_endpoint, create_app
from qvd.cli import run
from qvd.config import Config
from tests.api.asgi import PortalTransport
from tests.api.conftest import PASSWORD, World, api_engine, config, running_api, world

__all__ = ["LiveApi", "Qa", "api_engine", "config", "live_api", "qa", "world"]


class Qa:
    """``qa`` in-process: ``qa("vm get")`` → (exit status, stdout, stderr)."""

    def __init__(self, transport: PortalTransport | None, base: list[str]) -> None:
        self.transport = transport
        self.base = base

    def __call__(
        self, line: str, *, login: str = "root", tenant: str = "*", inp: str | None = None
    ) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        argv = [*self.base, "-l", login, "-p", PASSWORD, "-t", tenant, *shlex.split(line)]
        code = run(
            argv,
            out=out,
            err=err,
            inp=io.StringIO(inp) if inp is not None else None,
            transport=self.transport,
            environ={"HOME": "/nowhere"},
        )
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def qa(config: Config, api_engine: Engine, world: World) -> Iterator[Qa]:
    with anyio.from_thread.start_blocking_portal() as portal:
        yield Qa(
            PortalTransport(create_app(config, api_engine), portal), ["-u", "https://api.test/"]
        )


@dataclass(frozen=True)
class LiveApi:
    """The API on ``url`` (TLS with the certificate ``cert``) and its storage root."""

    url: str
    cert: Path
    storage: Path
    folder: Path

    def qa_conf(self, *, password: str | None = PASSWORD, **extra: str) -> Path:
        """A ``qa.conf`` for root (tenant ``*``) that trusts the API's certificate."""
        lines = [f"qa.url = {self.url}", "qa.login = root", "qa.tenant = *", f"qa.ca = {self.cert}"]
        if password is not None:
            lines.append(f"qa.password = {password}")
        lines += [f"qa.{k} = {v}" for k, v in extra.items()]
        path = self.folder / "qa.conf"
        path.write_text("\n".join(lines) + "\n")
        return path


@pytest.fixture
def live_api(tmp_path: Path, api_engine: Engine, world: World) -> Iterator[LiveApi]:
    with running_api(tmp_path, api_engine) as running:
        endpoint = api_endpoint(running.config)
        yield LiveApi(endpoint.url, endpoint.cert, tmp_path / "storage", tmp_path)
