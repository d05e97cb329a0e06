"""The VM agent (VMA): runs inside every image on the image's own python3.

Standard library only, and nothing from the rest of ``qvd`` (an import-linter contract
checks it). Modules: ``properties``/``config`` (``/etc/qvd/vma.conf``), ``simplerpc``
(the wire encoding), ``methods`` (the RPC table), ``auth`` (the per-VM secret),
``server`` (HTTP), ``nxstate`` (the nxagent lifecycle table) and ``agentlog``,
``nxoptions``, ``provision``, ``hooks``, ``session`` (the runner), ``main`` (the
process) and ``client`` (for the L7R and the HKD).

This face re-exports nothing so that starting the agent imports only what it uses;
import from the modules (e.g. ``from qvd.vma.client import VmaClient``).
"""

__all__: list[str] = []
