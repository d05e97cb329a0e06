"""Which staging directory an administrator sees: one per tenant.

Files dropped into ``path.storage.staging`` by the node's administrator are the
platform's: only superadmins list and import them. A tenant's administrators see only
``<staging>/tenant-<tenant id>/`` (the id, never the tenant's name, goes into the
path), so a file staged for one tenant is invisible to every other. In monotenant
mode (``wat.multitenant`` off) everybody uses the top directory, as QVD did.

Errors shown to a tenant administrator name "the tenant's staging directory", never a
node path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qvd.api.actions.principal import Principal
from qvd.config import Config

__all__ = ["Staging", "staging_for"]


@dataclass(frozen=True, slots=True)
class Staging:
    """A staging directory and how to name it to the administrator who uses it."""

    path: Path
    shown: str


def staging_for(config: Config, principal: Principal) -> Staging:
    """The staging directory ``principal`` may list and import from."""
    root = config.get_path("path.storage.staging")
    if principal.superadmin or not config.get_bool("wat.multitenant"):
        return Staging(root, f"the staging directory {root}")
    return Staging(root / f"tenant-{int(principal.tenant_id)}", "the tenant's staging directory")
