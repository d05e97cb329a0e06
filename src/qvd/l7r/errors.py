"""What the L7R answers when it cannot do what was asked.

Each error carries the status code existing QVD clients expect for that condition
(reference §3.4b) and a message that says the real reason; the message is the
``text/plain`` body (QVD collapsed most of these into a bare 503).

    L7rError
    ├── ProtocolError      the bytes are not an acceptable request: the connection closes
    │   ├── BadRequest (400), HeadTooLarge (431), VersionNotSupported (505)
    │   ├── ContentTooLarge (413), UriTooLong (414)
    │   └── RequestTimeout (408)
    └── RequestError       a well-formed request that cannot be served: keep-alive goes on
        ├── Unauthorized (401), Forbidden (403), NotFound (404),
        ├── MethodNotAllowed (405), Unprocessable (422), UpgradeRequired (426)
        ├── TooManyAttempts (401, saying so), Internal (500)
        └── Unavailable (503)
            ├── DatabaseUnavailable (503: the database is down; QVD's clients say
            │   "under maintenance")
            └── Busy (503: a connect cap is reached; the body says which, retry later)

``database_outage(exc)`` turns the database errors that mean "cannot reach it"
(connection refused or lost, operational errors, an exhausted pool) into that 503.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from qvd.db.errors import DatabaseUnreachable

__all__ = [
    "BadRequest",
    "Busy",
    "ContentTooLarge",
    "DatabaseUnavailable",
    "Forbidden",
    "HeadTooLarge",
    "Internal",
    "L7rError",
    "MethodNotAllowed",
    "NotFound",
    "ProtocolError",
    "RequestError",
    "RequestTimeout",
    "TooManyAttempts",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UpgradeRequired",
    "UriTooLong",
    "VersionNotSupported",
    "database_outage",
]


class L7rError(Exception):
    """An answer other than success: ``status`` for the client, ``message`` for people."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtocolError(L7rError):
    """The request itself is broken; after the answer the connection is closed."""

    status = 400


class BadRequest(ProtocolError):
    status = 400


class HeadTooLarge(ProtocolError):
    status = 431


class ContentTooLarge(ProtocolError):
    """A request body: the L7R serves GET only and accepts none."""

    status = 413


class UriTooLong(ProtocolError):
    status = 414


class VersionNotSupported(ProtocolError):
    status = 505


class RequestTimeout(ProtocolError):
    status = 408


class RequestError(L7rError):
    """A well-formed request that cannot be served; the connection stays usable."""


class Unauthorized(RequestError):
    status = 401


class TooManyAttempts(Unauthorized):
    """Too many failed logins: still 401 (what clients understand), saying so."""


class Forbidden(RequestError):
    status = 403


class NotFound(RequestError):
    status = 404


class MethodNotAllowed(RequestError):
    status = 405


class Unprocessable(RequestError):
    status = 422


class UpgradeRequired(RequestError):
    status = 426


class Internal(RequestError):
    status = 500


class Unavailable(RequestError):
    status = 503


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached: the service is under maintenance for now."""


class Busy(Unavailable):
    """Too many connects in flight (for this user, this address or this node): 503,
    which QVD clients show as "not available, retry later", with the cap in the body."""


_OUTAGES = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def database_outage(exc: BaseException) -> DatabaseUnavailable | None:
    """The 503 for an error that means the database is out of reach, else None.

    The reason names the kind of failure only: driver messages carry addresses and
    user names that are no business of the client (the server logs them).
    """
    if isinstance(exc, DatabaseUnreachable):
        reason = "the database cannot be reached"
    elif isinstance(exc, sa_exc.TimeoutError):
        reason = "no database connection is free"
    elif isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        reason = "the connection to the database was lost"
    elif isinstance(exc, _OUTAGES):
        reason = "the database cannot be reached"
    else:
        return None
    return DatabaseUnavailable(f"The service is under maintenance ({reason}); retry later.")
