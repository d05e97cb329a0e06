"""The configuration editor: database tokens, types checked, secrets masked."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
