"""``/api/v1/users``: the people who connect to desktops."""

from __future__ import annotations

from qvd.api.faces.rest import crud_router, exec_route
from qvd.api.faces.schemas import UserCreate, UserUpdate

__all__ = ["router"]

router = crud_router("users", "user", UserCreate, UserUpdate)
exec_route(router, "user", "block", "user_update", lambda: {"blocked": True})
exec_route(router, "user", "unblock", "user_update", lambda: {"blocked": False})
