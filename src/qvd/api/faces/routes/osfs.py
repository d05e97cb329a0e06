"""``/api/v1/osfs``: operating system flavours."""

from __future__ import annotations

from qvd.api.faces.rest import crud_router
from qvd.api.faces.schemas import OsfCreate, OsfUpdate

__all__ = ["router"]

router = crud_router("osfs", "osf", OsfCreate, OsfUpdate)
