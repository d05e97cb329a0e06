"""The per-VM secret and the check of each call's ``Authorization`` header.

The HKD places the secret in the container before it starts, as the file
``/etc/qvd/vma.secret`` (``vma.secret.file``; mode 0600, root-owned, one line); a
virtual machine gets it through fw_cfg and the VMA keeps it in
``/run/qvd/vma.secret`` (see ``identity``). If the file is absent the VMA takes
``QVD_VMA_SECRET`` from its environment (then removes it from the environment so that
no child inherits it). Callers send ``Authorization: Bearer <secret>``. Without a
secret (or with ``path=None``: a refused identity) every call is refused.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

__all__ = ["SECRET_ENV", "SecretStore", "authorized"]

SECRET_ENV = "QVD_VMA_SECRET"  # noqa: S105 -- the variable name, not a secret


def authorized(header: str | None, secret: bytes | None) -> bool:
    """Whether ``header`` carries ``Bearer <secret>`` (constant-time comparison)."""
    if not secret or header is None:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), secret)


class SecretStore:
    """Reads the secret file, re-reading it when it changes (the HKD may rotate it)."""

    def __init__(self, path: Path | None, environ: dict[str, str] | None = None) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._secret: bytes | None = None
        env = os.environ if environ is None else environ
        fallback = env.pop(SECRET_ENV, "").strip()
        self._fallback = fallback.encode() if fallback and path is not None else None

    def current(self) -> bytes | None:
        if self._path is None:
            return None
        try:
            st = self._path.stat()
        except OSError:
            return self._fallback
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                text = self._path.read_text(encoding="utf-8").strip()
            except OSError:
                return self._fallback
            self._secret = text.encode() if text else None
            self._stamp = stamp
        return self._secret
