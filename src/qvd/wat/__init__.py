"""The WAT: QVD's web administration tool, served by the admin API at ``/``.

Server-rendered pages (Jinja2) with htmx for partial updates and a few small ES
modules of our own (``static/js``); no build chain. Everything it does goes through the
API's action layer by an :class:`~qvd.wat.port.ActionPort` (same ACLs, audit log and
tenant scope); it never touches the database. ``docs/wat.md`` says why this shape.
"""

from qvd.wat.app import install
from qvd.wat.port import ActionPort, Answer, LoginResult, WatError, csrf_token

__all__ = ["ActionPort", "Answer", "LoginResult", "WatError", "csrf_token", "install"]
