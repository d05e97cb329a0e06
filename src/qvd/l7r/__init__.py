"""The L7R: the client-facing HTTP/1.1-over-TLS broker (reference §3).

Pure protocol modules (no I/O): ``wire`` (HTTP framing over h11), ``states`` (the
connect handshake table), ``params``, ``nxcookie``, ``iproute`` (may a VM address be
connected to), ``errors`` and the pure parts of ``auth``. I/O at the edges: ``server``
(asyncio + TLS), ``relay``, ``tls``; blocking database and VMA work: ``store``,
``flow``, ``endpoints`` (what each endpoint does), ``notify``. The HKD hosts
``L7rServer``; failed logins are limited by ``qvd.loginlimit`` (shared with the API).
"""

from qvd.l7r.errors import L7rError
from qvd.l7r.server import L7rServer
from qvd.l7r.tls import ensure_certificate

__all__ = ["L7rError", "L7rServer", "ensure_certificate"]
