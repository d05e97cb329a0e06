"""``/api/v1/properties``: custom property keys."""

from __future__ import annotations

from qvd.api.faces.rest import crud_router
from qvd.api.faces.schemas import PropertyCreate, PropertyUpdate

__all__ = ["router"]

router = crud_router("properties", "property", PropertyCreate, PropertyUpdate)
