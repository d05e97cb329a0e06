"""Authentication of L7R requests: credentials, the plugin chain, tokens, rate limits.

Plugins (one module each): ``default`` (argon2 hashes in ``users``), ``ldap``,
``auto`` (create user and VM on first login), ``totp`` (one-time code after the
password).
"""

from qvd.l7r.auth.base import Attempt, AuthContext, AuthPlugin, Principal
from qvd.l7r.auth.chain import Authenticator
from qvd.l7r.auth.tokens import issue_token, store_auth_params

__all__ = [
    "Attempt",
    "AuthContext",
    "AuthPlugin",
    "Authenticator",
    "Principal",
    "issue_token",
    "store_auth_params",
]
