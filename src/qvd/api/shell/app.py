"""The app factory: both faces, the OpenAPI document, metrics and error mapping."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import Engine
from starlette.responses import Response

from qvd.api.errors import ApiError, RateLimited, http_status
from qvd.api.faces import action, ws
from qvd.api.faces.routes import ROUTERS
from qvd.api.faces.routes.dis import action_router as di_action_router
from qvd.api.shell.metrics import Metrics, MetricsGate, MetricsMiddleware
from qvd.api.shell.state import AppState
from qvd.api.shell.watport import ApiPort
from qvd.config import Config
from qvd.wat import install as install_wat

__all__ = ["create_app"]

DESCRIPTION = """The QVD admin API (the WAT, its web administration tool, is at `/`).

Two faces over one service layer:

* `/api/v1/…`: resources (tenants, administrators, roles, ACLs, users, VMs, hosts, OSFs,
  DIs and tags, configs, properties, audit log, statistics). Errors answer an HTTP status
  with `{status, message}`, where `status` is QVD's code.
* `POST /api`: QVD's action endpoint (`{action, filters, arguments, fields, order_by,
  block, offset}`, in a JSON body or the query string), answering HTTP 200 with
  `{status, message, total, rows}` as `qa4` and the original WAT expect.

Types: `/api/v1` answers with real JSON types: booleans are `true`/`false`, numbers are
numbers, as the schemas below say. Only QVD's action face `POST /api` (and `/api/ws`)
sends booleans as `0`/`1`, as the original QVD did.

Log in with `POST /api/v1/sessions`; send the token as `Authorization: Bearer <sid>`,
`X-QVD-Sid: <sid>` or the `sid` cookie. `/api/v1` never takes a session token in a URL;
QVD's `POST /api` and the `/api/ws` WebSocket accept one in the query string, as the
original WAT sends it (never logged).
"""


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return JSONResponse(exc.body(), status_code=http_status(exc), headers=headers)


def create_app(config: Config, engine: Engine) -> FastAPI:
    """The API as an ASGI app over ``engine`` (a migrated QVD database)."""
    app = FastAPI(
        title="QVD admin API",
        version="1",
        description=DESCRIPTION,
        docs_url="/api/v1/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.qvd = AppState.build(config, engine)
    metrics = Metrics(engine)
    gate = MetricsGate(config.get("metrics.token"))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_exception_handler(ApiError, _api_error)
    app.include_router(action.router)
    app.include_router(di_action_router)
    ws.install(app, engine)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint(request: Request) -> Response:
        client = request.client.host if request.client is not None else None
        refused = gate.refusal(client, request.headers.get("authorization"))
        if refused is not None:
            return PlainTextResponse(
                refused.reason, status_code=refused.status, headers=dict(refused.headers)
            )
        return metrics.render()

    install_wat(app, ApiPort(app.state.qvd))
    return app
