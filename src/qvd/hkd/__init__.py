"""The House Keeping Daemon (HKD): one per node, a reconcile loop that makes the VMs
assigned to this node match what the database wants, plus heartbeats, peer watching
and (later) the L7R listener.

Modules: ``backends`` (the hypervisor interface and its implementations),
``workqueue`` (keyed work queue), ``store`` (every SQL the HKD runs), ``reconcile``
(one step per VM), ``health`` (VMA liveness), ``heartbeat``, ``cluster`` and
``daemon`` (the wiring).
"""

__all__: list[str] = []
