"""The WAT's Content-Security-Policy: one policy for every page (no inline script or
style: no ``unsafe-inline``, no ``unsafe-eval``), and the one narrow extension a
page may ask for: posting one form to one other site (the spy launcher posts its
ticket to the user portal of the VM's node)."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

__all__ = ["CSP", "FormTargetError", "csp_allowing_form_to", "form_target_source"]

_DIRECTIVES = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
CSP = "; ".join(_DIRECTIVES)
"""What every WAT response carries unless it sets its own."""

_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


class FormTargetError(ValueError):
    """A URL that may not become a form's target (not plain ``https://host:port/path``)."""


def form_target_source(url: str) -> str:
    """The CSP source expression allowing a form to post to ``url`` and nowhere else
    on that site: ``https://host:port/path``. Only ``https`` URLs with a host name or
    IPv4 address, an explicit port and a plain path are accepted. CSP has no syntax
    for IPv6 literals: a form to one is allowed as ``https:`` (any secure site)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise FormTargetError(f"not a usable port in {url!r}") from None
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or port is None
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
        or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", parts.path)
    ):
        raise FormTargetError(f"not a plain https://host:port/path URL: {url!r}")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if isinstance(literal, ipaddress.IPv6Address):
        return "https:"
    if literal is None and not _HOSTNAME.fullmatch(host):
        raise FormTargetError(f"not a host name: {host!r}")
    return f"https://{host}:{port}{parts.path}"


def csp_allowing_form_to(url: str) -> str:
    """:data:`CSP` with ``form-action`` also allowing a post to ``url``."""
    source = form_target_source(url)
    return "; ".join(f"{d} {source}" if d.startswith("form-action ") else d for d in _DIRECTIVES)
