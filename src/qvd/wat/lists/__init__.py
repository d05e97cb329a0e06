"""List views: one :class:`ListView` per kind of object (VMs, users, nodes, …) and the
routes that show it (:func:`list_router`): free-text search and per-column filters,
sort, pagination with the administrator's page size, the column choice saved per
administrator (and as the tenant's default), mass actions on a selection (confirmed
first when they ask for it; per-object results) and CSV export.

A list is one action (``<object>_get_list``) with QVD's filters, through the port."""

from __future__ import annotations

from qvd.wat.lists.mass import ids_of
from qvd.wat.lists.model import Column, ListView, MassAction, MassInput
from qvd.wat.lists.query import ListQuery
from qvd.wat.lists.routes import cell_link, list_router, run_list

__all__ = [
    "Column",
    "ListQuery",
    "ListView",
    "MassAction",
    "MassInput",
    "cell_link",
    "ids_of",
    "list_router",
    "run_list",
]
