"""Every configuration token, its default, its type and what it does: the one place.

QVD's configuration is one flat namespace of dotted tokens (reference §6). A token
marked ``per_tenant`` may be overridden for one tenant by a row of ``configs`` with
that tenant's id; every other token reads only the global rows (tenant -1). Families
(``Family``) accept any key under a prefix, for token sets that are open by nature
(LDAP settings, hooks, resource limits).

Who may see what (issue #12, "secrets stay on the node"):

- *node-local* tokens (``nodename``, ``database.*``, ``path.database*``, ``metrics.*``,
  the node's egress ``vm.network.egress.{enable,uplink,deny}``) describe the node
  itself; a database row never sets them.
- *secret* tokens (kind ``SECRET``, or a name part such as ``password``, ``bindpass``,
  ``secret``, ``token``, ``key``) are never logged, never shown in an audit entry, and
  never expanded into a value that comes from the database.
- a row of one tenant may refer (``${…}``) only to tokens a tenant may set itself and
  that are not secret (``tenant_may_refer_to``); a global row to anything but
  node-local and secret tokens (``db_may_refer_to``). ``Config`` enforces both when it
  expands a value, the API when a row is written.

Where this project deliberately departs from QVD's default (faster reaction, no
well-known secrets) the doc says so. ``docs/config.md`` is generated from this table
by ``qvd config doc``; a test keeps it current.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "FAMILIES",
    "NODE_LOCAL_PREFIXES",
    "TOKENS",
    "Family",
    "Kind",
    "Token",
    "db_may_refer_to",
    "find_family",
    "is_node_local",
    "is_per_tenant",
    "is_secret",
    "kind_of",
    "lookup",
    "tenant_may_refer_to",
    "token_names",
]


class Kind(Enum):
    """How a token's text is read."""

    STR = "string"
    INT = "integer"
    FLOAT = "number"
    BOOL = "boolean (1/0, true/false, yes/no, on/off)"
    LIST = "comma-separated list"
    PATH = "path"
    SECRET = "secret (never logged)"  # noqa: S105 - a type name


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """One configuration token."""

    name: str
    default: str | None
    kind: Kind
    doc: str
    per_tenant: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Family:
    """Any token whose name starts with ``prefix``."""

    prefix: str
    kind: Kind
    doc: str
    per_tenant: bool = False


TXT, INT, NUM, BOOL, LST, PTH, SEC = (
    Kind.STR,
    Kind.INT,
    Kind.FLOAT,
    Kind.BOOL,
    Kind.LIST,
    Kind.PATH,
    Kind.SECRET,
)


def _t(name: str, default: str | None, kind: Kind, doc: str, *, tenant: bool = False) -> Token:
    return Token(name=name, default=default, kind=kind, doc=doc, per_tenant=tenant)


TOKENS: tuple[Token, ...] = (
    # --- node identity and database -------------------------------------------------
    _t("nodename", None, TXT, "This node's name; must equal `hosts.name` of its row."),
    _t(
        "database.host",
        "",
        TXT,
        "PostgreSQL host or socket directory. Empty: the node's own embedded cluster "
        "(`qvd up`). The environment variable QVD_DATABASE_URL overrides all database.*.",
    ),
    _t("database.port", "5432", INT, "PostgreSQL port of an external server."),
    _t("database.name", "qvd", TXT, "Database name."),
    _t("database.user", "qvd", TXT, "Database role."),
    _t("database.password", "", SEC, "Database password (empty: none, e.g. peer or trust)."),
    _t("database.connect_timeout", "20", INT, "Seconds to wait for a database connection."),
    # --- metrics --------------------------------------------------------------------
    _t(
        "metrics.token",
        "",
        SEC,
        "Bearer token a scraper must send to read `/metrics` (new). Empty: `/metrics` "
        "answers only requests from a loopback address.",
    ),
    # --- metrics: the node's own /metrics (engineer "metrics", issue #17) ------------
    _t(
        "metrics.port",
        "0",
        INT,
        "TCP port of this node's `/metrics` (HKD + L7R, over TLS with the L7R's "
        "certificate). 0: not served. Prometheus' convention for a QVD node: 9702.",
    ),
    _t(
        "metrics.address",
        "127.0.0.1",
        TXT,
        "Address the node's `/metrics` listens on (`*`: every address). Any address other "
        "than a loopback one needs `metrics.token`: the node refuses to start otherwise.",
    ),
    _t(
        "database.embedded.port",
        "55432",
        INT,
        "Loopback TCP port of the embedded cluster (it also listens on a unix socket).",
    ),
    _t(
        "database.embedded.bin",
        "/usr/lib/postgresql/15/bin",
        PTH,
        "Directory with initdb and pg_ctl for the embedded cluster.",
    ),
    _t(
        "database.embedded.os_user",
        "postgres",
        TXT,
        "System user that owns and runs the embedded cluster (initdb refuses root).",
    ),
    # --- paths ------------------------------------------------------------------------
    _t("path.run", "/var/run/qvd", PTH, "Runtime files: locks, sockets, pid files."),
    _t("path.log", "/var/log/qvd", PTH, "Log directory."),
    _t("path.tmp", "/var/tmp", PTH, "Temporary files."),  # noqa: S108 - QVD's default
    _t("path.data", "/var/lib/qvd", PTH, "Persistent node data (embedded database, caches)."),
    _t("path.database", "${path.data}/pgdata", PTH, "Data directory of the embedded cluster."),
    _t("path.database.socket", "${path.run}/pg", PTH, "Socket directory of the embedded cluster."),
    _t("path.storage.root", "/var/lib/qvd/storage", PTH, "Root of all VM storage (DESIGN §3)."),
    _t("path.storage.staging", "${path.storage.root}/staging", PTH, "DIs dropped in for import."),
    _t("path.storage.images", "${path.storage.root}/images", PTH, "Imported DI files."),
    _t("path.storage.basefs", "${path.storage.root}/basefs", PTH, "Unpacked DIs (LXC)."),
    _t("path.storage.overlayfs", "${path.storage.root}/overlayfs", PTH, "Per-VM upper layers."),
    _t("path.storage.rootfs", "${path.storage.root}/rootfs", PTH, "Per-VM union mounts."),
    _t("path.storage.homefs", "${path.storage.root}/homefs", PTH, "Persistent homes (LXC)."),
    _t("path.storage.overlays", "${path.storage.root}/overlays", PTH, "Per-VM qcow2 overlays."),
    _t("path.storage.homes", "${path.storage.root}/homes", PTH, "Persistent home disks (KVM)."),
    _t("path.run.lxc", "${path.run}/lxc", PTH, "LXC path for generated container configs."),
    _t("path.run.kvm", "${path.run}/kvm", PTH, "KVM VMs' runtime files (QMP sockets, pid files)."),
    _t(
        "path.storage.bootfiles",
        "${path.storage.root}/bootfiles",
        PTH,
        "Kernels and initrds taken out of KVM DIs.",
    ),
    _t("path.cgroup", "/sys/fs/cgroup", PTH, "cgroup mount point."),
    _t("path.cache.di", "/var/cache/qvd/di", PTH, "Cache of built disk images, by recipe hash."),
    _t("path.l7r.ssl.key", "${path.run}/l7r/ssl/key.pem", PTH, "L7R TLS key file."),
    _t("path.l7r.ssl.cert", "${path.run}/l7r/ssl/cert.pem", PTH, "L7R TLS certificate file."),
    _t("path.l7r.ssl.ca", "${path.run}/l7r/ssl/ca.pem", PTH, "CA for client certificates."),
    _t("path.l7r.ssl.crl", "${path.run}/l7r/ssl/crl.pem", PTH, "CRL for client certificates."),
    _t("path.api.ssl.key", "/etc/qvd/api/certs/key.pem", PTH, "API TLS key file."),
    _t("path.api.ssl.cert", "/etc/qvd/api/certs/cert.pem", PTH, "API TLS certificate file."),
    # --- the all-in-one node (qvd up) -----------------------------------------------
    _t(
        "node.demo.recipe",
        "desktop",
        TXT,
        "Disk-image recipe `qvd up` builds (or reuses) for its demo desktop; empty: none.",
    ),
    # --- logging ----------------------------------------------------------------------
    _t("log.filename", "${path.log}/qvd.log", PTH, "Log file."),
    _t("log.level", "INFO", TXT, "DEBUG, INFO, WARNING or ERROR."),
    # --- L7R --------------------------------------------------------------------------
    _t("l7r.address", "*", TXT, "Listen address of the L7R (`*` = all)."),
    _t("l7r.port", "8443", INT, "Listen port of the L7R (TLS)."),
    _t("l7r.use_ssl", "1", BOOL, "TLS on the L7R listener (kept on: security by default)."),
    _t("l7r.client.cert.require", "0", BOOL, "Require client certificates."),
    _t("l7r.auth.plugins", "", LST, "Authentication plugins, in order.", tenant=True),
    _t("l7r.auth.plugins.head", "", LST, "Plugins placed before the per-tenant list."),
    _t("l7r.auth.plugins.tail", "default", LST, "Plugins placed after the per-tenant list."),
    _t(
        "l7r.auth.plugin.default.separators",
        "@#",
        TXT,
        "Characters that separate login and tenant in `user@tenant`.",
        tenant=True,
    ),
    _t(
        "l7r.auth.plugin.default.tenant",
        "default",
        TXT,
        "Tenant of logins that name none.",
        tenant=True,
    ),
    _t("l7r.auth.plugin.totp.token_size", "6", INT, "Digits of a TOTP code.", tenant=True),
    _t("l7r.auth.plugin.totp.interval", "30", INT, "TOTP period (s).", tenant=True),
    _t("l7r.auth.plugin.totp.t0", "0", INT, "TOTP epoch.", tenant=True),
    _t("l7r.auth.plugin.totp.leeway", "1", INT, "TOTP periods accepted either side.", tenant=True),
    _t(
        "l7r.auth.rate_limit.attempts",
        "10",
        INT,
        "Failed logins per user and per source address in the window before each further "
        "failure makes the next try wait 1, 2, 4 ... s (capped at the window); a user's wait "
        "holds back only addresses that have been failing (new).",
    ),
    _t(
        "l7r.auth.rate_limit.window",
        "60",
        INT,
        "Window of the failed-login limit, seconds: failures older than this no longer count, "
        "and no wait is longer (new).",
    ),
    _t(
        "l7r.limits.connects_per_user",
        "4",
        INT,
        "Connect or stop requests one user may have in flight on a node; more get 503 "
        "(new). At most half of `l7r.limits.connect_workers`.",
    ),
    _t(
        "l7r.limits.connects_per_address",
        "16",
        INT,
        "Connect or stop requests one source address may have in flight on a node, "
        "counted before the login is checked; more get 503 (new).",
    ),
    _t(
        "l7r.limits.connect_workers",
        "32",
        INT,
        "Threads serving connect and stop requests on a node; when all are busy, more get "
        "503. Logins and lists have threads of their own (new).",
    ),
    _t(
        "l7r.portal.enable",
        "1",
        BOOL,
        "Serve the user portal (desktops in the browser) from each node's L7R (new).",
    ),
    _t(
        "l7r.portal.address",
        "*",
        TXT,
        "Listen address of the user portal (`*` = all) (new).",
    ),
    _t(
        "l7r.portal.port",
        "4433",
        INT,
        "Listen port of the user portal (HTTPS and WSS, with the L7R's certificate) (new).",
    ),
    _t(
        "l7r.portal.session.timeout",
        "28800",
        INT,
        "Seconds a portal login lasts (its cookie holds a multi-use user token that expires "
        "then; a blocked user or a changed password ends it at once) (new).",
    ),
    _t("l7r.loadbalancer.plugin", "default", TXT, "Load-balancer plugin."),
    _t("l7r.loadbalancer.plugin.default.weight.ram", "1", NUM, "Weight of free RAM."),
    _t("l7r.loadbalancer.plugin.default.weight.cpu", "1", NUM, "Weight of idle CPU."),
    _t("l7r.loadbalancer.plugin.default.weight.random", "1", NUM, "Weight of random jitter."),
    _t("model.user.login.case-sensitive", "0", BOOL, "Keep the case of logins.", tenant=True),
    _t("internal.l7r.timeout.vm_start", "270", INT, "Seconds to wait for a VM to run."),
    _t("internal.l7r.timeout.vm_stop", "270", INT, "Seconds to wait for a VM to stop."),
    _t("internal.l7r.timeout.x_start", "10", INT, "Seconds to wait for `listening`."),
    _t("internal.l7r.timeout.vma", "4", INT, "Timeout of one VMA call, seconds."),
    _t("internal.l7r.timeout.takeover", "30", INT, "Seconds to take over another session."),
    _t("internal.l7r.retry.x_start", "20", INT, "Tries of `x_start`."),
    _t("internal.l7r.short_session", "120", INT, "Sessions shorter than this count as short."),
    _t(
        "internal.l7r.timeout.request",
        "30",
        INT,
        "Seconds a client may take to send one request head (slow-loris guard; new).",
    ),
    _t(
        "internal.l7r.timeout.handshake",
        "30",
        INT,
        "Seconds a client may take to finish its TLS handshake (new).",
    ),
    # --- authentication families (per tenant) -----------------------------------------
    _t(
        "auth.auto.enable",
        "0",
        BOOL,
        "Let the `auto` plugin create users and VMs in this tenant on first login (new; "
        "off unless the tenant turns it on).",
        tenant=True,
    ),
    _t("auth.auto.osf_id", None, INT, "OSF of VMs created on first login.", tenant=True),
    _t("auth.auto.di_tag", "default", TXT, "DI tag of VMs created on first login.", tenant=True),
    _t("auth.auto.max_vms", "5", INT, "VM names tried (`<login>-1..n`).", tenant=True),
    # --- spy (admin shadowing from the WAT) ------------------------------------------
    _t(
        "vm.spy.notice",
        "1",
        BOOL,
        "Show the user a notice naming the administrator who is viewing their desktop "
        "(the WAT's spy).",
        tenant=True,
    ),
    # --- HKD --------------------------------------------------------------------------
    _t("vm.hypervisor", "lxc", TXT, "Backend: `lxc` or `kvm`."),
    _t("vm.network.bridge", "qvdnet", TXT, "The node's VM bridge."),
    _t(
        "vm.network.bridge.manage",
        "1",
        BOOL,
        "The HKD creates the bridge, gives it this node's address, keeps a guard route and "
        "the firewall (0: the admin does; QVD never did).",
    ),
    _t("vm.network.ip.start", "10.0.0.100", TXT, "First VM address; nodes sit below it."),
    _t("vm.network.netmask", "255.255.0.0", TXT, "Netmask (or prefix length) of the VM network."),
    _t(
        "vm.network.gateway",
        "",
        TXT,
        "Gateway given to the VMs that may go out (see `vm.network.egress.enable`); empty: "
        "this node's bridge address. VMs without egress get no gateway, no route out.",
    ),
    _t(
        "vm.network.egress.enable",
        "0",
        BOOL,
        "Let desktops out to the network by NAT on `vm.network.egress.uplink` (new; off: "
        "they reach nothing beyond their node). Node-local: set in node.conf. Turns on "
        "net.ipv4.ip_forward, which is host-wide and stays on. Needs the managed bridge "
        "and its firewall.",
    ),
    _t(
        "vm.network.egress.uplink",
        "",
        TXT,
        "The one interface desktops go out by when egress is on (node-local).",
    ),
    _t(
        "vm.network.egress.deny",
        "0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,127.0.0.0/8,169.254.0.0/16,172.16.0.0/12,"
        "192.168.0.0/16,224.0.0.0/4,240.0.0.0/4",
        LST,
        "IPv4 networks desktops never reach through egress (node-local; default: private, "
        "shared, link-local, loopback and multicast ranges, so neither the node's LAN nor "
        "a cloud's metadata service; empty: none).",
    ),
    _t(
        "vm.network.egress.allow",
        "1",
        BOOL,
        "Whether this tenant's desktops go out when their node has egress (new). An OSF's "
        "property `vm.network.egress` (allow or deny) overrides it for that OSF's VMs.",
        tenant=True,
    ),
    _t("vm.network.domain", "", TXT, "DNS domain of VMs."),
    _t(
        "vm.network.use_dhcp",
        "1",
        BOOL,
        "Run the node's DHCP server on the VM bridge (one dnsmasq, bound to the bridge only, "
        "started by the HKD when it manages the bridge): each VM's MAC gets its address "
        "from the database, unknown MACs get nothing. KVM guests take their address by "
        "DHCP; LXC containers have theirs written in their config either way.",
    ),
    _t(
        "vm.network.dhcp.lease_time",
        "3600",
        INT,
        "Lease time the node's DHCP gives, seconds (at least 120).",
    ),
    _t(
        "vm.network.dns.enable",
        "0",
        BOOL,
        "The node's dnsmasq answers DNS on the VM bridge (only there), forwarding to "
        "vm.network.dns.servers; VMs with a gateway (egress) are given the bridge address "
        "as their DNS server. Off: no DNS at all (port 0).",
    ),
    _t(
        "vm.network.dns.servers",
        "",
        LST,
        "Upstream DNS servers (IP addresses, optionally IP#port) of the node's dnsmasq, "
        "used only when vm.network.dns.enable is on; nothing of the node's "
        "/etc/resolv.conf or /etc/hosts is used.",
    ),
    _t("vm.network.mac.prefix", "54:52:00", TXT, "First three octets of VM MACs."),
    _t("internal.vm.network.device.prefix", "qvd", TXT, "Host-side veth name prefix."),
    _t("internal.vm.network.firewall.enable", "1", BOOL, "Filter VM traffic on the node."),
    _t("internal.vm.network.firewall.protect_host", "1", BOOL, "Drop VM→node traffic."),
    _t("internal.vm.network.firewall.protect_vms", "1", BOOL, "Drop VM↔VM traffic."),
    _t("internal.vm.network.firewall.allow_login_from_vm", "0", BOOL, "Let VMs reach the L7R."),
    _t("vm.lxc.unionfs.type", "overlayfs", TXT, "Union filesystem of container roots."),
    _t("vm.lxc.home.per.user", "0", BOOL, "Homes per user login rather than per VM."),
    _t("vm.lxc.hooks.allow", "0", BOOL, "Run hooks shipped inside DIs."),
    _t("vm.lxc.redirect.allow", "0", BOOL, "Accept 'redirect' DIs."),
    _t("vm.lxc.pids.max", "2048", INT, "cgroup pids.max of each container (new)."),
    _t(
        "vm.lxc.fuse",
        "0",
        BOOL,
        "Bind /dev/fuse into desktops and keep CAP_SYS_ADMIN in their user namespace, so "
        "the client's shared folders mount (sshfs over the slave channel); root in a "
        "desktop can then mount tmpfs/fuse inside it. The host's /dev/fuse must be 0666 "
        "(new).",
    ),
    _t(
        "vm.lxc.idmap.start",
        "1000000",
        INT,
        "First host uid/gid of the desktops' user namespaces (new): root in a desktop is "
        "an unprivileged host uid from here on. Keep the block free of real accounts.",
    ),
    _t(
        "vm.lxc.idmap.ranges",
        "4096",
        INT,
        "How many 65536-id ranges follow `vm.lxc.idmap.start` (new). A VM gets range "
        "`vm_id mod ranges`, so VMs of a node share a range only when their ids differ "
        "by a multiple of it; 1 gives one range per node.",
    ),
    _t(
        "vm.cpus",
        "${vm.kvm.cpus}",
        INT,
        "Virtual CPUs of each desktop (new name of QVD's `vm.kvm.cpus`): a VM's vCPUs, a "
        "container's CPU time (at most this many CPUs, cgroup cfs quota). Per tenant; read "
        "when a desktop starts (running ones keep theirs).",
        tenant=True,
    ),
    _t(
        "vm.cpu.weight",
        "100",
        INT,
        "Relative CPU share of each desktop under contention, 1..10000, 100 = normal "
        "(cgroup v2 semantics; LXC: cpu.shares = weight * 1024 / 100) (new).",
    ),
    _t(
        "vm.overlay.persistent",
        "0",
        BOOL,
        "Keep a VM's root changes across restarts. Per tenant; read when a desktop starts.",
        tenant=True,
    ),
    _t(
        "vm.overlay.size",
        "2048",
        INT,
        "MiB a desktop may write outside its home (its root overlay's upper layer, new): "
        "each upper is its own sparse ext4 image, so writing past it fails with ENOSPC "
        "inside the desktop and never fills the node. A kept (persistent) upper grows with "
        "it but never shrinks. 0: unbounded.",
    ),
    _t("vm.kvm.accel", "auto", TXT, "`kvm`, `tcg` or `auto` (tcg where /dev/kvm is PVM)."),
    _t("vm.kvm.cpus", "2", INT, "QVD's name of `vm.cpus` (its default; set either)."),
    _t("vm.kvm.virtio", "1", BOOL, "Virtio devices for KVM VMs."),
    _t(
        "vm.kvm.machine",
        "pc",
        TXT,
        "QEMU machine type of KVM VMs: `pc` or `q35` (alike under TCG here: 10.9 s from "
        "QEMU's start to the test image's VMA with either).",
    ),
    _t(
        "vm.kvm.tb_size",
        "128",
        INT,
        "MiB of QEMU's translation cache per VM under TCG (QEMU's default takes ~270 MiB "
        "more per VM).",
    ),
    _t(
        "vm.kvm.user",
        "qvd-kvm",
        TXT,
        "System user QEMU drops to once it has opened its files (`-runas`); made with "
        "`useradd --system` when missing.",
    ),
    _t(
        "internal.hkd.kvm.start_timeout.tcg",
        "180",
        NUM,
        "Seconds a KVM VM under TCG (software emulation) may take to boot to its VMA.",
    ),
    _t(
        "internal.hkd.kvm.start_timeout.kvm",
        "30",
        NUM,
        "Seconds a KVM VM under hardware KVM may take to boot to its VMA.",
    ),
    _t(
        "internal.hkd.kvm.qmp_timeout",
        "20",
        NUM,
        "Seconds a QEMU just started may take to answer on its QMP socket.",
    ),
    _t("internal.vm.port.vma", "3030", INT, "VMA port inside VMs."),
    _t("internal.vm.port.ssh", "22", INT, "SSH port inside VMs."),
    _t("internal.nxagent.display", "100", INT, "nxagent display; its port is display+4000."),
    _t("internal.nxagent.timeout.initiating", "20", INT, "nxagent initiating timeout (s)."),
    _t("internal.nxagent.timeout.listening", "10", INT, "Seconds a client has to connect."),
    _t("internal.nxagent.timeout.suspending", "20", INT, "nxagent suspending timeout (s)."),
    _t("internal.nxagent.timeout.stopping", "20", INT, "nxagent stopping timeout (s)."),
    _t("osf.default.memory", "256", INT, "Memory of new OSFs, MB."),
    _t("osf.default.overlay", "1", BOOL, "Overlay of new OSFs."),
    _t("osf.default.is_application", "0", BOOL, "New OSFs are applications."),
    _t("internal.hkd.max_heavy", "10", INT, "VM starts in their heavy phase at once."),
    _t("internal.hkd.workers", "8", INT, "Reconciles running at once (new)."),
    _t(
        "internal.hkd.poll.delay",
        "5",
        NUM,
        "Resync period: every VM of the node is reconciled this often even without a "
        "NOTIFY, seconds (QVD polled commands every 61 s).",
    ),
    _t("internal.hkd.agent.ticker.delay", "2", NUM, "Heartbeat period, seconds (QVD: 120)."),
    _t(
        "internal.hkd.agent.ticker.timeout",
        "20",
        NUM,
        "Self-fencing: a node that cannot write its heartbeat this long stops its VMs (QVD: 450).",
    ),
    _t(
        "internal.hkd.cluster.node.timeout",
        "25",
        NUM,
        "A node silent this long is marked lost (QVD: 600).",
    ),
    _t(
        "internal.hkd.fence.kill_time",
        "2",
        NUM,
        "Seconds a fencing node may take to kill all its VMs; ticker.timeout + this + "
        "clock jitter must stay below cluster.node.timeout (checked at start).",
    ),
    _t(
        "internal.hkd.watchdog.enable",
        "1",
        BOOL,
        "Run the fencing watchdog: a small process that kills this node's VMs when the "
        "HKD has not proved its heartbeat for ticker.timeout, even if the HKD is dead.",
    ),
    _t("internal.hkd.agent.cluster_monitor.delay", "5", NUM, "Peer check period (QVD: 120)."),
    _t(
        "internal.hkd.agent.expiration_monitor.delay",
        "60",
        INT,
        "Expiration check period (QVD: 3600).",
    ),
    _t(
        "internal.hkd.vmhandler.vma_monitor.delay.after.ok",
        "1",
        NUM,
        "VMA ping period while healthy (QVD: 120).",
    ),
    _t(
        "internal.hkd.vmhandler.vma_monitor.delay.after.error",
        "1",
        NUM,
        "VMA ping period after a failure (QVD: 10).",
    ),
    _t(
        "internal.hkd.vmhandler.vma.failed.max_time.on.running",
        "8",
        NUM,
        "A running VM whose VMA refuses connections (dead agent) for this long is "
        "stopped (QVD: 320).",
    ),
    _t(
        "internal.hkd.vmhandler.vma.silent.max_time.on.running",
        "8",
        NUM,
        "A running VM whose VMA pings time out (a hung agent, or a VM starved of CPU) "
        "for this long is stopped; raise it on nodes so loaded that busy desktops "
        "time out, without delaying the end of dead ones.",
    ),
    _t(
        "internal.hkd.vmhandler.vma.failed.max_time.on.starting",
        "60",
        NUM,
        "A starting VM whose VMA never answered this long is stopped (QVD: 180).",
    ),
    _t("internal.hkd.agent.rpc.timeout", "3", NUM, "Timeout of one VMA call, seconds."),
    _t("internal.hkd.timeout.shutdown", "30", NUM, "Seconds between `poweroff` and a hard stop."),
    _t("internal.hkd.timeout.stop", "30", NUM, "Seconds between TERM and KILL of a VM."),
    _t(
        "internal.hkd.stopping.vms",
        "0",
        BOOL,
        "On SIGTERM, stop this node's VMs (else leave them).",
    ),
    _t("internal.hkd.lock.path", "${path.run}/hkd.lock", PTH, "HKD single-instance lock."),
    _t(
        "internal.hkd.gc.delay",
        "3600",
        NUM,
        "Seconds between two passes of the node's storage garbage collector (0: never; "
        "`qvd gc` runs one by hand).",
    ),
    _t(
        "internal.hkd.gc.grace",
        "3600",
        NUM,
        "Seconds a leftover (`images/.upload-*`, `basefs/untar-*`, `deleteme-*`) stays "
        "untouched before the garbage collector removes it.",
    ),
    _t(
        "internal.hkd.gc.home_retention",
        "-1",
        NUM,
        "Days the home of a deleted VM or user is kept before the garbage collector "
        "removes it (-1, the default: never removed; 0: at the next pass).",
    ),
    _t("internal.vm.debug.enable", "0", BOOL, "Keep VMs whose VMA never answers (`debugging`)."),
    # --- VMA --------------------------------------------------------------------------
    _t("vma.user.default.name", "qvd", TXT, "User name when none is given."),
    _t("vma.user.default.groups", "qvduser", LST, "Groups of provisioned users."),
    _t("vma.user.home.path", "/home", PTH, "Parent of users' homes."),
    _t("vma.user.shell", "/bin/bash", PTH, "Shell of provisioned users."),
    _t("vma.default.lang", "en_US.UTF-8", TXT, "LANG of sessions."),
    _t("vma.audio.enable", "0", BOOL, "PulseAudio forwarding."),
    _t("vma.printing.enable", "0", BOOL, "Printing channel."),
    _t("vma.slave.enable", "0", BOOL, "Slave channel."),
    # --- VMA: Opus sound for the project's client (opus engineer, issue #16) ----------
    _t(
        "vma.audio.opus.bitrate",
        "64000",
        INT,
        "Opus bitrate (bit/s, 6000..510000) when the project's client asks for compressed sound.",
    ),
    _t("vma.audio.opus.frame_ms", "20", INT, "Opus frame size in ms (5, 10, 20, 40 or 60)."),
    # --- API / WAT --------------------------------------------------------------------
    _t("api.address", "127.0.0.1", TXT, "Listen address of the admin API (TLS)."),
    _t("api.port", "8444", INT, "Listen port of the admin API (TLS)."),
    _t("api.session.timeout", "3600", INT, "Idle lifetime of an admin session, seconds."),
    _t("api.login.rate_limit.attempts", "10", INT, "Failed admin logins allowed per window."),
    _t(
        "api.login.rate_limit.window",
        "60",
        INT,
        "Window of the failed admin-login limit, seconds: past `api.login.rate_limit.attempts` "
        "failures in it from one address (or, for addresses that have been failing, for one "
        "login name), each failure makes the next try wait 1, 2, 4 ... s up to this (3200, "
        "HTTP 429 on /api/v1); failures older than the window no longer count.",
    ),
    _t(
        "api.di.upload.max_size",
        "68719476736",
        INT,
        "Largest image file a DI upload or staging import accepts, bytes (default 64 GiB). "
        "An upload is stopped with 2250 as soon as it goes over (it streams into a "
        "temporary file in the images directory, removed on refusal).",
    ),
    _t(
        "di.unpack.max_bytes",
        "68719476736",
        INT,
        "Most bytes of file data an LXC image may unpack to (default 64 GiB): counted from "
        "the tar headers while the node unpacks it (and when an upload is checked), so a "
        "tar bomb stops at the first member over, its partial directory removed. Also the "
        "largest virtual disk a KVM (qcow2) image may declare, checked from its header.",
    ),
    _t(
        "di.unpack.max_members",
        "4000000",
        INT,
        "Most members (files, directories, links) an LXC image may hold; checked like "
        "`di.unpack.max_bytes`.",
    ),
    _t(
        "api.di.upload.reserve",
        "1073741824",
        INT,
        "Bytes an upload or staging import must leave free on the images file system "
        "(default 1 GiB): a file that would leave less is refused with 2250 as soon as "
        "its declared or streamed size shows it, and its partial file removed.",
    ),
    _t("wat.multitenant", "1", BOOL, "Multitenant mode."),
    # --- config: the database's rows on every node (issue #17, engineer "config") -----
    _t(
        "internal.hkd.config.poll.delay",
        "30",
        NUM,
        "Seconds between two reads of the `configs` rows by a node when no "
        "`qvd_config_changed` notification came (the fallback for a lost one; new).",
    ),
    # --- end of config's block -------------------------------------------------------
    # --- client defaults (sent to clients, used by qvd-client) ---------------------
    _t("client.host.port", "8443", INT, "Default L7R port for clients."),
    _t("client.link", "adsl", TXT, "Default NX link speed."),
    _t("client.geometry", "1024x768", TXT, "Default session geometry."),
    # --- HA PostgreSQL (issue #17, ha: docs/ha-postgresql.md) ---------------------------
    _t(
        "database.target_session_attrs",
        "read-write",
        TXT,
        "Which server of `database.host` a daemon connects to (libpq "
        "target_session_attrs: read-write, primary, any). With several hosts "
        "(`database.host = pg1,pg2:5433,pg3`, a host without a port takes "
        "`database.port`) libpq tries them in order and keeps the one that takes "
        "writes, so a failover needs no proxy. Not used for the embedded cluster.",
    ),
    _t(
        "database.failover_wait",
        "15",
        NUM,
        "Seconds an API request, or a step of an L7R connect, that lost its database "
        "connection before its commit waits for a primary (a failover) while it "
        "retries; a connection lost during a commit is never retried (the change may "
        "have been made: the state is read again).",
    ),
    # --- policies (issue #17, engineer "policy": qvd.policy) -------------------------
    _t(
        "policy.enable",
        "1",
        BOOL,
        "Whether this node's HKD takes part in the policy leader election (every node "
        "tries; one at a time holds the PostgreSQL advisory lock and applies the policies).",
    ),
    _t(
        "policy.tick.delay",
        "30",
        NUM,
        "Seconds between two policy passes of the leader (and between two tries of a node "
        "that does not lead). Policy times stay in minutes; this is how soon they are seen.",
    ),
    _t(
        "policy.schedule.catchup.minutes",
        "60",
        INT,
        "A scheduled start/stop missed (no leader at its minute) still runs when a leader "
        "sees it within this many minutes; an older occurrence is skipped.",
    ),
    _t(
        "policy.warm_pool.weeks",
        "4",
        INT,
        "Weeks of session history a warm pool looks back on to find who usually connects "
        "at this weekday and hour.",
    ),
    _t(
        "policy.warm_pool.min_days",
        "2",
        INT,
        "Days (of those weeks, on this weekday) a user must have connected in the window "
        "for the warm pool to count them as usual.",
    ),
    # --- session history (issue #17, engineer "history") -----------------------------
    _t(
        "session.history.retention.days",
        "180",
        INT,
        "Days a row of the session history (logins, connects, takeovers) is kept; the "
        "HKD's collector deletes older ones in bounded batches at each pass (0: kept "
        "forever).",
    ),
)

FAMILIES: tuple[Family, ...] = (
    Family(
        prefix="auth.ldap.",
        kind=TXT,
        per_tenant=True,
        doc="LDAP plugin settings (host, base, filter, scope, binddn, bindpass, "
        "userbindpattern, deref, racf_allowregex, name.normalize, home.set).",
    ),
    Family(
        prefix="vma.on_action.",
        kind=PTH,
        doc="VMA action hooks (pre-connect, connect, stop, suspend, poweroff, expire).",
    ),
    Family(
        prefix="vma.on_state.",
        kind=PTH,
        doc="VMA state hooks (connected, suspended, disconnected).",
    ),
    Family(
        prefix="vma.on_provisioning.",
        kind=PTH,
        doc="VMA provisioning hooks (mount_home, add_user, after_add_user).",
    ),
    Family(prefix="hkd.process.limit.", kind=INT, doc="rlimits of the HKD process."),
    Family(prefix="api.public.", kind=TXT, doc="Values published by /api/info."),
)

_BY_NAME = {t.name: t for t in TOKENS}
if len(_BY_NAME) != len(TOKENS):  # pragma: no cover - a programming error
    raise RuntimeError("duplicate token in qvd.config.tokens.TOKENS")


NODE_LOCAL_PREFIXES = (
    "nodename",
    "database.",
    "path.database",
    "metrics.",
    "vm.network.egress.enable",
    "vm.network.egress.uplink",
    "vm.network.egress.deny",
)
_SECRET_PARTS = frozenset(
    {"password", "passwd", "pass", "bindpass", "secret", "secrets", "token", "key", "cookie"}
)


def is_node_local(name: str) -> bool:
    """Tokens that describe the node itself: only node.conf sets them."""
    return any(name == p or name.startswith(p) for p in NODE_LOCAL_PREFIXES)


def kind_of(name: str) -> Kind | None:
    """The kind of a token or of the family it belongs to; None when unknown."""
    token = lookup(name)
    if token is not None:
        return token.kind
    family = find_family(name)
    return family.kind if family is not None else None


def is_per_tenant(name: str) -> bool:
    """Whether a tenant's configuration rows may set the token (or its family)."""
    token = lookup(name)
    if token is not None:
        return token.per_tenant
    family = find_family(name)
    return family.per_tenant if family is not None else False


def is_secret(name: str) -> bool:
    """Tokens whose value must never be shown, logged or expanded into a database row.

    Declared ``SECRET`` tokens and families, and any name with a part that names a
    secret (``auth.ldap.bindpass``, ``x.password``, …), except paths (a path to a key
    file is not the key).
    """
    kind = kind_of(name)
    if kind is Kind.SECRET:
        return True
    if kind is Kind.PATH:  # where a key lives (path.l7r.ssl.key) is not the key
        return False
    lowered = name.lower()
    if "password" in lowered or "secret" in lowered:
        return True
    return any(part in _SECRET_PARTS for part in lowered.split("."))


def tenant_may_refer_to(name: str) -> bool:
    """Whether a tenant's row may contain ``${name}``: a per-tenant, non-secret token."""
    return is_per_tenant(name) and not is_secret(name) and not is_node_local(name)


def db_may_refer_to(name: str) -> bool:
    """Whether a global database row may contain ``${name}``."""
    return not is_secret(name) and not is_node_local(name)


def find_family(name: str) -> Family | None:
    """The family a token name belongs to, if any."""
    for family in FAMILIES:
        if name.startswith(family.prefix) and len(name) > len(family.prefix):
            return family
    return None


def token_names() -> frozenset[str]:
    """Names of all declared tokens."""
    return frozenset(_BY_NAME)


def lookup(name: str) -> Token | None:
    """The declared token of that name."""
    return _BY_NAME.get(name)
