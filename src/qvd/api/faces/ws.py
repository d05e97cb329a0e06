"""``/api/ws``: the live result of a read-only action over a WebSocket (reference §5.1).

The socket is authenticated like ``POST /api``, from the session token in the
``Authorization: Bearer`` or ``X-QVD-Sid`` header, the ``sid`` cookie or, because a
browser cannot set headers on a WebSocket, the ``sid`` query parameter; or from
``login``, ``password`` and ``tenant`` in the query (a session is then opened for the
socket). Query strings are cut from uvicorn's log lines. Credentials are never read
from messages.

The action comes from the query string (``action``, and ``filters``, ``fields``,
``order_by``, ``block``, ``offset``, ``arguments`` JSON-encoded as for ``GET /api``)
or, when the query names none, from the first message (a JSON object of the same
keys). Only read-only actions (``type_of_action == "see"``) run; anything else is
refused with 4210.

The server pushes the action's result (the body ``POST /api`` would answer, as one
JSON text message), then runs the action again whenever a NOTIFY arrives on a
channel that concerns the action's object in the admin's tenant (see
:data:`CHANNELS_BY_OBJECT`) and pushes the result again when it differs from the
last one pushed. Every socket also re-runs its action on a timer, pushing only a
changed result: every :data:`POLL` seconds (QVD's 2 s) when no channel covers the
object or the LISTEN connection is down, every :data:`SAFETY_POLL` seconds otherwise
(for changes in tables without triggers, such as custom properties). Each run
authenticates the session again and goes through ``run_action``, so a logout, a
blocked tenant or a revoked ACL applies to the next push and tenant isolation is
exactly that of ``POST /api``.

Any text from the client counts as a keep-alive; after :data:`KEEPALIVE` seconds
without one the server sends ``AKN`` (as QVD did), and again after each further
such period. A message other than a bare keep-alive word (:data:`KEEPALIVE_WORDS`)
asks for the list again: the action runs and its result is sent even if unchanged
(the original WAT's live views ask that way).

Every body sent carries ``rows`` (``[]`` in an error: the WAT reads it whatever the
status). Refusals are sent as a QVD error body (``{"status", "message", "rows"}``) and the socket is
then closed with: 4401 (no, bad or expired session, status 3xxx), 4403 (a mutating
or forbidden action, 42xx), 4400 (a malformed request: no or unknown action, bad
JSON, filter, field or order), 1011 (the first run failed on the server's side). An
error in a later run is pushed like a result; an authentication error then closes
the socket with 4401.

One LISTEN connection per API process serves every socket:
:class:`qvd.api.faces.notifyhub.NotifyHub`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from qvd.api.actions.core import Action
from qvd.api.actions.dispatch import lookup_action
from qvd.api.errors import (
    ActionError,
    ApiError,
    AuthError,
    Forbidden,
    InternalError,
    InvalidRequest,
    Status,
)
from qvd.api.faces import qvdshape
from qvd.api.faces.action import JSON_KEYS, decode_json_keys, parse_action, result_body
from qvd.api.faces.notifyhub import NotifyHub, Subscription, channels_for
from qvd.api.shell.state import AppState, Credentials, app_state, client_address, token_from_headers

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_FORBIDDEN",
    "CLOSE_UNAUTHENTICATED",
    "KEEPALIVE",
    "POLL",
    "SAFETY_POLL",
    "WS_PATH",
    "install",
    "router",
    "scrub_url",
]

log = logging.getLogger(__name__)

WS_PATH = "/api/ws"
KEEPALIVE = 25.0  # seconds of client silence before the server says AKN
POLL = 2.0  # re-run period without a covering channel (QVD checked every 2 s)
SAFETY_POLL = 10.0  # re-run period with channels: tables without triggers, lost NOTIFYs
DEBOUNCE = 0.05  # a burst of notifications (one per row) makes one re-run
FIRST_MESSAGE_WAIT = 30.0  # seconds to wait for the request when the query has none
KEEPALIVE_WORDS = frozenset({"", "ACK", "AKN", "ping", "pong", "keepalive", "keep-alive"})

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_INTERNAL = 1011
_AKN = "AKN"
_INTERNAL = InternalError("the server could not run the action (the API log says why)")
_REQUEST_KEYS = ("action", "block", "offset", *JSON_KEYS)


def install(app: FastAPI, engine: Engine) -> None:
    """Mount ``/api/ws`` on ``app`` with a hub over ``engine``'s database."""
    app.state.qvd_notify_hub = NotifyHub.for_engine(engine)
    app.include_router(router)
    _scrub_uvicorn_logs()


def _hub(websocket: WebSocket) -> NotifyHub:
    hub: Any = websocket.app.state.qvd_notify_hub
    assert isinstance(hub, NotifyHub)
    return hub


# ------------------------------------------------------------------ one socket

router = APIRouter(include_in_schema=False)


class _Close(Exception):
    """End the socket with ``code`` after sending ``body``."""

    def __init__(self, body: dict[str, Any], code: int) -> None:
        super().__init__(body.get("message"))
        self.body = body
        self.code = code


def _error_body(error: ApiError) -> dict[str, Any]:
    """An error as the WAT reads it on a socket: with (empty) ``rows``."""
    return {**error.body(), "rows": []}


def _close_code(error: ApiError) -> int:
    if isinstance(error, AuthError):
        return CLOSE_UNAUTHENTICATED
    if isinstance(error, Forbidden):
        return CLOSE_FORBIDDEN
    if isinstance(error, InternalError) or error.code == Status.INTERNAL:
        return CLOSE_INTERNAL
    return CLOSE_BAD_REQUEST


def _credentials(websocket: WebSocket) -> Credentials:
    """The socket's credentials: a session token, or a login in the query string."""
    query = websocket.query_params
    address = client_address(websocket)
    token = token_from_headers(websocket) or query.get("sid")
    if token:
        return Credentials(token=token, source="API", address=address)
    if query.get("login") is not None and query.get("password") is not None:
        return Credentials(
            login=query.get("login"), password=query.get("password"),
            tenant=query.get("tenant"), source="API", address=address,
        )  # fmt: skip
    raise AuthError(
        "no session: send the token in the 'sid' cookie, an 'Authorization: Bearer' "
        "header or the 'sid' query parameter (log in with POST /api first)",
        Status.NO_CREDENTIALS,
    )


def _decoded(data: dict[str, Any]) -> dict[str, Any]:
    return decode_json_keys({k: v for k, v in data.items() if k in _REQUEST_KEYS})


async def _request_data(websocket: WebSocket) -> dict[str, Any]:
    """The action call, from the query string or else the first message."""
    query = dict(websocket.query_params)
    if query.get("action"):
        return _decoded(query)
    try:
        message = await asyncio.wait_for(websocket.receive(), FIRST_MESSAGE_WAIT)
    except TimeoutError:
        raise ActionError(
            f"no action: name it in the query string or send it as the first message "
            f"within {FIRST_MESSAGE_WAIT:.0f} s",
            Status.EMPTY_ACTION,
        ) from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        text = (message.get("bytes") or b"").decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"the first message is not JSON: {exc}", Status.BAD_JSON) from None
    if not isinstance(data, dict):
        raise InvalidRequest("the first message must be a JSON object", Status.BAD_JSON)
    return _decoded(data)


def _read_only_action(name: Any) -> Action:
    action = lookup_action(name)
    if action.type_of_action != "see":
        raise Forbidden(
            f"{name!r} changes data ({action.type_of_action}); {WS_PATH} runs only read-only "
            "actions: send it with POST /api",
            Status.FORBIDDEN_ACTION,
        )
    return action


def _run(state: AppState, creds: Credentials, data: dict[str, Any]) -> dict[str, Any]:
    """One run of the action: the body ``POST /api`` would answer (errors raise). A
    run is not the admin's doing: it does not keep the session alive."""
    principal = state.authenticate(creds, touch=False)
    return result_body(qvdshape.run(state.runner, principal, parse_action(copy.deepcopy(data))))


def _encode(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclass(slots=True)
class _Socket:
    """What the loop of one socket keeps between runs."""

    websocket: WebSocket
    sub: Subscription
    heard: float  # loop time of the last client message (or of the last AKN)
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # the client closed
    last_pushed: str | None = None
    asked: bool = False  # the client asked for the list again

    async def push(self, body: dict[str, Any], *, always: bool = False) -> None:
        text = _encode(body)
        if always or text != self.last_pushed:
            await self.websocket.send_text(text)
            self.last_pushed = text

    async def listen_to_client(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                self.heard = loop.time()
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode("utf-8", "replace")
                if text.strip() not in KEEPALIVE_WORDS:
                    self.asked = True
                    self.sub.wake.set()
        finally:
            self.gone.set()
            self.sub.wake.set()


async def _serve(websocket: WebSocket, state: AppState, hub: NotifyHub, creds: Credentials) -> None:
    opening = creds.token is None
    principal = await run_in_threadpool(
        functools.partial(state.authenticate, creds, new_session=opening)
    )
    if opening:  # logged in by the query: the socket's runs use the new session
        creds = Credentials(
            token=principal.session_token, source=creds.source, address=creds.address
        )
    data = await _request_data(websocket)
    action = _read_only_action(data.get("action"))
    parse_action(data)  # a malformed order or field list fails now
    loop = asyncio.get_running_loop()
    sub = Subscription(channels=channels_for(action), tenant_id=principal.tenant_scope())
    sock = _Socket(websocket=websocket, sub=sub, heard=loop.time())
    try:
        await hub.subscribe(sub)  # before the first run: no change slips in between
        try:
            await sock.push(await run_in_threadpool(_run, state, creds, data))
        except ApiError as exc:
            raise _Close(_error_body(exc), _close_code(exc)) from None
        receiver = asyncio.create_task(sock.listen_to_client())
        try:
            await _follow(sock, state, hub, creds, data)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await receiver
    finally:
        hub.unsubscribe(sub)


async def _follow(
    sock: _Socket, state: AppState, hub: NotifyHub, creds: Credentials, data: dict[str, Any]
) -> None:
    """Re-run on notifications and timers, push what changed, say AKN when due."""
    loop = asyncio.get_running_loop()
    sub = sock.sub

    def period() -> float:
        return SAFETY_POLL if sub.channels and hub.listening else POLL

    next_run = loop.time() + period()
    while not sock.gone.is_set():
        deadline = min(next_run, sock.heard + KEEPALIVE)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.wake.wait(), max(0.0, deadline - loop.time()))
        sub.wake.clear()
        if sock.gone.is_set():
            return
        if sub.dirty or sock.asked or loop.time() >= next_run:
            always = sock.asked
            if not always:
                await asyncio.sleep(DEBOUNCE)
            sub.dirty = sock.asked = False
            try:
                await sock.push(await run_in_threadpool(_run, state, creds, data), always=always)
            except AuthError as exc:
                raise _Close(_error_body(exc), CLOSE_UNAUTHENTICATED) from None
            except ApiError as exc:
                await sock.push(_error_body(exc), always=always)
            except Exception:  # the database may be back for the next run
                log.exception("%s: running %r failed", WS_PATH, data.get("action"))
                await sock.push(_error_body(_INTERNAL), always=always)
            next_run = loop.time() + period()
        if loop.time() >= sock.heard + KEEPALIVE:
            await sock.websocket.send_text(_AKN)
            sock.heard = loop.time()


@router.websocket(WS_PATH)
async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    state = app_state(websocket)
    try:
        await _serve(websocket, state, _hub(websocket), _credentials(websocket))
    except WebSocketDisconnect:
        return
    except ApiError as exc:
        await _close(websocket, _error_body(exc), _close_code(exc))
    except _Close as close:
        await _close(websocket, close.body, close.code)
    except Exception:
        log.exception("%s failed", WS_PATH)
        await _close(websocket, _error_body(_INTERNAL), CLOSE_INTERNAL)


async def _close(websocket: WebSocket, body: dict[str, Any], code: int) -> None:
    """Send the refusal, then close with ``code`` (the reason is the message, cut to
    the 123 bytes a close frame holds)."""
    if websocket.client_state is not WebSocketState.CONNECTED:
        return
    reason = str(body.get("message", "")).encode()[:120].decode("utf-8", "ignore")
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.send_text(_encode(body))
        await websocket.close(code, reason)


# ------------------------------------------------------------------ log hygiene

_QUERY_PARAM = re.compile(r"([?&])([^=&\s\"'?#]*)=([^&\s\"'#]*)")
SECRET_PARAMS = frozenset({"sid", "password", "login", "token"})
"""Query parameters whose values never reach a log line."""


def scrub_url(text: str) -> str:
    """``text`` with the values of :data:`SECRET_PARAMS` in its query strings blanked
    (also when the name is percent-encoded, as a server decodes it)."""

    def blank(m: re.Match[str]) -> str:
        name = urllib.parse.unquote_plus(m.group(2)).strip().lower()
        return f"{m.group(1)}{m.group(2)}=***" if name in SECRET_PARAMS else m.group(0)

    return _QUERY_PARAM.sub(blank, text) if "=" in text else text


class _ScrubSid(logging.Filter):
    """Blank credentials (``sid=``, ``password=``, ``login=``) in the query strings of
    uvicorn's log lines: the access log and WebSocket lines carry full paths, and the
    original WAT sends its credentials in the query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(scrub_url(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: scrub_url(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        if isinstance(record.msg, str):
            record.msg = scrub_url(record.msg)
        return True


def _scrub_uvicorn_logs() -> None:
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ScrubSid) for f in logger.filters):
            logger.addFilter(_ScrubSid())
