"""Disk images: list, details, upload with progress, import from staging, tags and expiry."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
