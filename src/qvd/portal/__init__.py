"""The user portal: a user's desktops in the browser, served by each node's L7R.

``PortalServer(core)`` (``server``) runs the Starlette app of ``make_app(core)``
(``app``) under uvicorn over TLS with the L7R's certificate, on ``l7r.portal.address``:
``l7r.portal.port``. It shares the L7R's ``L7rCore``: the same auth chain, connect flow
and session registry, so a takeover works between an NX client and a browser.
"""

from qvd.portal.app import make_app
from qvd.portal.server import PortalServer

__all__ = ["PortalServer", "make_app"]
