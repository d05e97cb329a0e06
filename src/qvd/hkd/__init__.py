"""The House Keeping Daemon (HKD): one per node, a reconcile loop that makes the VMs
assigned to this node match what the database wants, plus heartbeats, peer watching,
self-fencing, and the services it hosts (the L7R listener, handed in by ``qvd.node``).

Modules: ``backends`` (the hypervisor interface and its implementations),
``workqueue`` (keyed work queue), ``store`` (every SQL the HKD runs), ``reconcile``
(one step per VM), ``health`` (talking to a VM's agent), ``network`` (the node's
bridge, address, guard route and firewall), ``addressing`` (VM IPs, MACs, interface
names), ``load`` (this node's load figures), ``settings`` (the HKD's typed settings),
``pidlock`` (single-instance lock), ``daemon`` (the process: heartbeats, peers and the
threads feeding the loop) and ``runner`` (running it in the foreground: logging,
signals, clean stop).
"""

__all__: list[str] = []
