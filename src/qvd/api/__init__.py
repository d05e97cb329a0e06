"""The admin API (FastAPI): a REST face under ``/api/v1`` and QVD's action face
``POST /api``, over one service layer with sessions, ACLs and tenants.

``create_app(config, engine)`` builds the ASGI app; ``serve(config, ready=, stop=)``
runs it over TLS (``qvd up`` and ``qvd api``); ``api_endpoint(config)`` says where
it listens and which certificate clients should trust.

Subpackages by role: ``faces`` (how requests arrive: REST with ``routes`` and
``schemas``, the ``action`` face, the ``ws`` WebSocket), ``actions`` (the machinery
under every face: ``core``, ``dispatch``, ``listing``, ``audit``, ``principal``,
``auth``), ``services`` (what each action does, one module per object), ``uploads``
(DI image uploads and staging) and ``shell`` (``app``, ``server``, ``state``, ``tls``,
``metrics``). ``errors`` is shared by all.
"""

from qvd.api.errors import ServeError
from qvd.api.shell.app import create_app
from qvd.api.shell.server import ApiEndpoint, api_endpoint, login_instructions, serve

__all__ = ["ApiEndpoint", "ServeError", "api_endpoint", "create_app", "login_instructions", "serve"]
