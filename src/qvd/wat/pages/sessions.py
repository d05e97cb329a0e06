"""The session history (read only): who logged in, who used which desktop when, from
where, how long and how it ended; newest first, filtered by column, searched by login,
desktop or address, exported as CSV by the list engine.

The API keeps tenant administrators to their tenant's rows (``session_get_list``,
ACL ``session.see``)."""

from __future__ import annotations

from qvd.wat.lists import Column, ListView, list_router

__all__ = ["VIEW", "router"]

KINDS = (("login", "Login"), ("connect", "Connect"), ("takeover", "Takeover"))
END_REASONS = (
    ("disconnect", "Disconnected"), ("taken_over", "Taken over"), ("stopped", "Stopped"),
    ("node_lost", "Node lost"), ("error", "Error"), ("suspended", "Suspended"),
)  # fmt: skip
TRANSPORTS = (("nx", "NX client"), ("vnc", "Browser"), ("portal", "Portal"))

VIEW = ListView(
    object="session",
    path="/sessions",
    title="Session history",
    list_action="session_get_list",
    columns=(
        Column("started_at", "Started", "datetime"),
        Column("kind", "Kind", "state", choices=KINDS),
        Column("result", "Result"),
        Column("login", "Login"),
        Column("vm_name", "Desktop"),
        Column("host_name", "Node"),
        Column("client_address", "Client address"),
        Column("transport", "Door", "state", choices=TRANSPORTS),
        Column("duration", "Duration (s)", "number"),
        Column("end_reason", "End", "state", choices=END_REASONS),
        Column("ended_at", "Ended", "datetime", default=False),
        Column("client_info", "Client", default=False),
        Column("detail", "Detail", default=False),
        Column("bytes_in", "Bytes in", "number", default=False),
        Column("bytes_out", "Bytes out", "number", default=False),
    ),
    search=("login", "vm_name", "client_address"),
    default_order=(("started_at", True), ("id", True)),
    acl="session.see",
    name_field="login",
)

router = list_router(VIEW)
