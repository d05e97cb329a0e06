"""Query parameters of ``connect_to_vm`` and ``stop_vm`` (pure).

Only ``id``, ``qvd.client.*`` and ``custom.*`` are accepted (403 otherwise, as QVD);
``id`` must be there (422) and be a number (422 too: it is still not a VM id).
"""

from __future__ import annotations

from collections.abc import Iterable

from qvd.l7r.errors import Forbidden, Unprocessable

__all__ = ["ALLOWED_PREFIXES", "client_params", "vm_id_of"]

ALLOWED_PREFIXES = ("qvd.client.", "custom.")


def vm_id_of(query: Iterable[tuple[str, str]]) -> int:
    """The ``id`` parameter (its last value) as a VM id."""
    value = dict(query).get("id")
    if value is None or not value.strip():
        raise Unprocessable("parameter id is missing")
    try:
        return int(value.strip())
    except ValueError:
        raise Unprocessable(f"parameter id must be a VM number, not {value[:40]!r}") from None


def client_params(query: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The ``qvd.client.*`` and ``custom.*`` parameters (last value wins); any other key
    but ``id`` is refused."""
    params: dict[str, str] = {}
    bad: list[str] = []
    for key, value in query:
        if key == "id":
            continue
        if key.startswith(ALLOWED_PREFIXES):
            params[key] = value
        else:
            bad.append(key)
    if bad:
        raise Forbidden(
            "Invalid parameters: "
            + ", ".join(sorted(set(bad)))
            + " (only id, qvd.client.* and custom.* are accepted)"
        )
    return params
