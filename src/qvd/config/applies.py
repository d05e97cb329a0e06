"""When a changed token takes effect on a running node: the one table (issue #17).

"What can change live does; what cannot says so." Every token falls in one class:

- ``live``: read again for each use (a login, a connect, an API call, a reconcile
  step) from the node's live configuration (``qvd.db.dbconfig.LiveConfig``), which
  follows the ``configs`` rows on ``qvd_config_changed``.
- ``next-start``: read when a VM starts, with that VM's tenant (``vm.cpus``,
  ``vm.cpu.weight``, ``vm.overlay.persistent``): running desktops keep what they
  started with.
- ``restart``: read once when a daemon starts (listen addresses and ports, paths, the
  database, TLS files, the HKD's timers, the hypervisor and its backend's settings,
  the node network, worker pools). A row for one applies at the daemon's next start;
  until then the node logs it once and lists it as pending (``qvd config check
  --pending``, the host's ``pending_restart`` fact).
- ``image``: read by the VMA inside the desktop from its own ``/etc/qvd/vma.conf`` (or
  from VM properties); a ``configs`` row never reaches it.
- ``client``: defaults that clients read; nodes do not use them.

The table is pure data, tested row by row; the order of rules matters (first match).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["RULES", "Applies", "applies_of"]


class Applies(Enum):
    """When a change of a token takes effect on a running node."""

    LIVE = "live"
    NEXT_START = "next-start"
    RESTART = "restart"
    IMAGE = "image"
    CLIENT = "client"


_L, _S, _R, _I, _C = (
    Applies.LIVE,
    Applies.NEXT_START,
    Applies.RESTART,
    Applies.IMAGE,
    Applies.CLIENT,
)

# (name or prefix ending in ".", class). A name matches an exact entry, or an entry
# ending in "." that it starts with. First match wins; no match: live.
RULES: tuple[tuple[str, Applies], ...] = (
    # the node itself and its files
    ("nodename", _R),
    ("database.", _R),
    ("metrics.", _R),
    ("path.", _R),
    ("log.", _R),
    ("node.", _R),
    ("hkd.process.limit.", _R),
    ("policy.enable", _R),  # whether the HKD starts its policy runner (qvd.policy)
    # the L7R's listener, TLS, worker pools and per-process limiters
    ("l7r.address", _R),
    ("l7r.port", _R),
    ("l7r.use_ssl", _R),
    ("l7r.client.cert.require", _R),
    ("l7r.portal.enable", _R),
    ("l7r.portal.address", _R),
    ("l7r.portal.port", _R),
    ("l7r.limits.connect_workers", _R),
    ("l7r.auth.rate_limit.", _R),
    ("internal.l7r.timeout.request", _R),
    ("internal.l7r.timeout.handshake", _R),
    # the API's listener and its per-process login limiter
    ("api.address", _R),
    ("api.port", _R),
    ("api.login.rate_limit.", _R),
    # at each VM's start, with the VM's tenant
    ("vm.cpus", _S),
    ("vm.cpu.weight", _S),
    ("vm.overlay.persistent", _S),
    # read live by the HKD's egress filter, per tenant
    ("vm.network.egress.allow", _L),
    # read live by the L7R (the portal's spy notice)
    ("vm.spy.notice", _L),
    # the hypervisor, its backend and the node network: made once at the HKD's start
    ("vm.", _R),
    ("internal.vm.", _R),
    ("internal.hkd.", _R),
    ("di.unpack.", _R),
    # inside the desktop (the VMA's own file)
    ("vma.", _I),
    ("internal.nxagent.", _I),
    # read by clients
    ("client.", _C),
)


def applies_of(name: str) -> Applies:
    """When a change of ``name`` takes effect on a running node."""
    for rule, applies in RULES:
        if name == rule or (rule.endswith(".") and name.startswith(rule)):
            return applies
    return Applies.LIVE
