"""Roles and ACLs: list, details, the ACL editor (inherited roles, granted, denied, effective)."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
