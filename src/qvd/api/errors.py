"""API errors: each carries the QVD status code clients expect (reference §5.7) and a
message that says what went wrong.

ApiError                      any refusal or failure of an API action
├── AuthError                 3xxx: no, wrong or expired credentials; tenant blocked
│   └── RateLimited           3200 too many failed logins from one address or for one name
├── ActionError               41xx: unknown or empty action name
├── Forbidden                 42xx: an ACL is missing for the action, filter, argument,
│                             field or order field
├── StateError                5xxx: the object is not in a state that allows it
├── InvalidRequest            6xxx: malformed JSON, filter, argument, field or order
├── NotFound                  1300 / 7100 / 7110 / 2290: nothing selected or a
│                             referenced item is missing
├── Conflict                  7xxx: already exists, in use, fixed tag, cycle, ...
├── MultipleFailures          1200: a multi-object action failed for some objects
└── InternalError             1100 / 2xxx: our fault or the server's storage

ServeError                    the API server itself cannot run (port taken, bad TLS files)

Both faces (``POST /api`` and ``/api/v1``) raise these; ``http_status`` is the one
place that maps a QVD code to an HTTP status for the REST face (the action face
always answers HTTP 200 with the code in ``status``, as QVD did).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActionError",
    "ApiError",
    "AuthError",
    "Conflict",
    "Forbidden",
    "InternalError",
    "InvalidRequest",
    "MultipleFailures",
    "NotFound",
    "RateLimited",
    "ServeError",
    "StateError",
    "Status",
    "http_status",
]


class Status:
    """QVD's API status codes (the ones this API sends)."""

    OK = 0
    INTERNAL = 1100
    SOME_FAILED = 1200
    ZERO_SELECTED = 1300
    STORAGE = 2210
    NO_IMAGES_DIR = 2220
    NO_STAGING_DIR = 2230
    NOT_IN_STAGING = 2240
    UPLOAD_FAILED = 2250
    MOVE_FAILED = 2251
    DI_NOT_FOUND = 2290
    NO_CREDENTIALS = 3100
    WRONG_CREDENTIALS = 3200
    SESSION_EXPIRED = 3300
    TENANT_RESTRICTED = 3500
    LOGOUT_ERROR = 3600
    UNKNOWN_ACTION = 4100
    EMPTY_ACTION = 4110
    FORBIDDEN_ACTION = 4210
    FORBIDDEN_FILTER = 4220
    FORBIDDEN_FILTER_VALUE = 4221
    FORBIDDEN_ARGUMENT = 4230
    FORBIDDEN_FIELD = 4250
    FORBIDDEN_ORDER = 4260
    CANNOT_DISCONNECT = 5110
    CANNOT_STOP = 5120
    CANNOT_START = 5130
    NO_HOST = 5140
    CANNOT_SPY = 5150  # new: spy a VM that is not running
    DELETE_SELF = 5200
    BAD_JSON = 6100
    BAD_FILTER = 6210
    MISSING_FILTER = 6220
    BAD_ARGUMENT = 6230
    MISSING_ARGUMENT = 6240
    BAD_FIELD = 6250
    BAD_FILTER_VALUE = 6310
    BAD_ARGUMENT_VALUE = 6320
    BAD_PROPERTY = 6330
    BAD_TAG = 6340
    BAD_ACL = 6350
    BAD_ROLE = 6360
    BAD_CONFIG_TOKEN = 6380
    MISSING_VALUE = 6410
    BAD_ORDER_DIRECTION = 6600
    BAD_ORDER_FIELD = 6610
    MISSING_REFERENCE = 7100
    MISSING_REFERENCE_ARG = 7110
    HAS_DEPENDENTS = 7120
    ALREADY_EXISTS = 7200
    PROPERTY_CONFLICT = 7210
    ACL_ASSIGNED = 7220
    ROLE_ASSIGNED = 7230
    TENANT_MISMATCH = 7300
    VM_RUNNING = 7310
    DI_IN_USE = 7320
    HOST_RUNNING = 7321
    TAG_FIXED = 7330
    TAG_PROTECTED = 7340
    ROLE_CYCLE = 7350
    CORE_CONFIG = 7370
    MONOTENANT = 7373
    NEW_CONFIG_TOKEN = 7382
    ALREADY_DEFAULT = 7390


class ApiError(Exception):
    """A refused or failed action: ``code`` is QVD's status, ``message`` the reason."""

    default_code = Status.INTERNAL

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = self.default_code if code is None else code

    def body(self) -> dict[str, Any]:
        return {"status": self.code, "message": self.message}


class AuthError(ApiError):
    default_code = Status.NO_CREDENTIALS


class RateLimited(AuthError):
    default_code = Status.WRONG_CREDENTIALS

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ActionError(ApiError):
    default_code = Status.UNKNOWN_ACTION


class Forbidden(ApiError):
    default_code = Status.FORBIDDEN_ACTION


class StateError(ApiError):
    default_code = Status.CANNOT_START


class InvalidRequest(ApiError):
    default_code = Status.BAD_ARGUMENT


class NotFound(ApiError):
    default_code = Status.ZERO_SELECTED


class Conflict(ApiError):
    default_code = Status.ALREADY_EXISTS


class InternalError(ApiError):
    default_code = Status.INTERNAL


class MultipleFailures(ApiError):
    """Some objects of a multi-object action failed; ``failures`` says which and why."""

    default_code = Status.SOME_FAILED

    def __init__(self, failures: dict[int, ApiError], total: int) -> None:
        done = total - len(failures)
        super().__init__(f"the action failed for {len(failures)} of {total} objects ({done} done)")
        self.failures = failures

    def body(self) -> dict[str, Any]:
        out = super().body()
        out["failures"] = {
            str(k): {"status": e.code, "message": e.message} for k, e in self.failures.items()
        }
        return out


class ServeError(Exception):
    """``serve`` could not start the listener; the message says where and why."""


def http_status(error: ApiError) -> int:
    """The HTTP status the REST face answers for an error."""
    code = error.code
    if isinstance(error, RateLimited):
        return 429
    if code == Status.NO_HOST:
        return 503
    if 3000 <= code < 3500:
        return 401
    if code == Status.TENANT_RESTRICTED:
        return 403
    if code in (Status.UNKNOWN_ACTION, Status.EMPTY_ACTION):
        return 404
    if 4200 <= code < 4300:
        return 403
    if code in (Status.ZERO_SELECTED, Status.MISSING_REFERENCE, Status.DI_NOT_FOUND):
        return 404
    if 5000 <= code < 6000 or 7000 <= code < 8000 or code == Status.SOME_FAILED:
        return 409
    if 6000 <= code < 7000:
        return 400
    if code in (Status.NOT_IN_STAGING, Status.NO_STAGING_DIR):
        return 404
    if code == Status.UPLOAD_FAILED:
        return 400
    return 500
