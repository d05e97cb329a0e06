"""A real LXC node for tests: a private /24 and bridge name, its own run and lxc paths,
a session-shared storage root (so a DI is unpacked once per session), the `test`
image imported as a DI file, and a thorough clean-up that asserts nothing leaked."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from qvd.config import Config
from qvd.hkd.backends.lxc import LxcBackend
from qvd.hkd.dnsmasq import end_leftover
from qvd.hkd.network import NodeNetwork

__all__ = ["LxcNode", "add_lxc_vm", "free_subnet", "leaks", "node_config"]


def _used_networks() -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    out = subprocess.run(
        ["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True,
        check=False,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        words = line.split()
        for word in words[:2]:
            with contextlib.suppress(ValueError):
                used.append(ipaddress.IPv4Network(word, strict=False))
    return used


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 under 10.214.0.0/16 that no route on this host touches."""
    used = _used_networks()
    for _ in range(200):
        candidate = ipaddress.IPv4Network(f"10.214.{secrets.randbelow(250) + 2}.0/24")
        if not any(candidate.overlaps(n) for n in used):
            return candidate
    raise RuntimeError("no free /24 under 10.214.0.0/16")


def node_config(
    run: Path, storage: Path, subnet: ipaddress.IPv4Network, bridge: str, nodename: str,
    **extra: str,
) -> Config:  # fmt: skip
    values = {
        "nodename": nodename,
        "vm.hypervisor": "lxc",
        "vm.network.bridge": bridge,
        "vm.network.bridge.manage": "1",
        "vm.network.ip.start": str(subnet.network_address + 100),
        "vm.network.netmask": str(subnet.prefixlen),
        "path.run": str(run),
        "path.storage.root": str(storage),
        "internal.hkd.workers": "4",
        "internal.hkd.poll.delay": "1",
        "internal.hkd.agent.ticker.delay": "0.5",
        # fence 4 s + kill 2 s + jitter 0.43 s < lost 8 s (the settings refuse less)
        "internal.hkd.agent.ticker.timeout": "4",
        "internal.hkd.fence.kill_time": "2",
        "internal.hkd.agent.cluster_monitor.delay": "0.5",
        "internal.hkd.cluster.node.timeout": "8",
        "internal.hkd.timeout.shutdown": "5",
        "internal.hkd.timeout.stop": "5",
        "log.level": "INFO",
    }
    values.update(extra)
    return Config().with_overrides(values, source="test")


def leaks(backend: LxcBackend, vm_id: int, storage: Path) -> list[str]:
    """Everything a stopped VM could leave on the host; empty when clean."""
    found: list[str] = []
    mounts = Path("/proc/mounts").read_text()
    if str(storage) in mounts or f"qvd-{vm_id} " in mounts:
        found.append("mount")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False)
    if f" {backend.device_prefix}{vm_id}" in links.stdout.replace(":", " "):
        found.append("veth")
    if backend.lxc.has_cgroups(f"qvd-{vm_id}"):
        found.append("cgroup")
    if backend.layout.container_dir(vm_id).exists():
        found.append("lxc state")
    if backend.is_alive(vm_id):
        found.append("running container")
    return found


@dataclass
class LxcNode:
    """One node's paths and network, and the way to clean them all."""

    name: str
    root: Path
    storage: Path
    subnet: ipaddress.IPv4Network
    bridge: str

    @classmethod
    def create(cls, root: Path, storage: Path, name: str = "node1") -> LxcNode:
        return cls(
            name=name, root=root, storage=storage, subnet=free_subnet(),
            bridge=f"qvdh{secrets.token_hex(3)}",
        )  # fmt: skip

    @property
    def host_address(self) -> str:
        return str(self.subnet.network_address + 2)

    def vm_address(self, n: int) -> str:
        return str(self.subnet.network_address + 100 + n)

    def config(self, **extra: str) -> Config:
        return node_config(
            self.root / self.name, self.storage, self.subnet, self.bridge, self.name, **extra
        )

    def config_file(self, **extra: str) -> Path:
        config = self.config(**extra)
        path = self.root / f"{self.name}.conf"
        path.write_text("".join(f"{k} = {config.get(k)}\n" for k in sorted(_written(config))))
        return path

    def network(self) -> NodeNetwork:
        return NodeNetwork(
            bridge=self.bridge, host_address=self.host_address, network=self.subnet,
            ip_start=self.subnet.network_address + 100, vma_port=3030, x_port=4100,
        )  # fmt: skip

    def backend(self, **extra: str) -> LxcBackend:
        return LxcBackend(self.config(**extra))

    def import_image(self, engine: Engine, image: Path, osf_id: int) -> int:
        """Put the image in the images directory as a published DI tagged `default`.

        Its file name keeps the image's own name (which carries the recipe hash), because
        DI ids restart at 10000 in every test database while the storage root, and so
        the unpacked bases, are shared by the whole session."""
        name = image.name.split(".")[0]
        images = self.storage / "images"
        images.mkdir(parents=True, exist_ok=True)
        with engine.begin() as conn:
            di_id = conn.execute(
                text("INSERT INTO dis (osf_id, path, version) VALUES (:o, 'x', :v) RETURNING id"),
                {"o": osf_id, "v": secrets.token_hex(4)},
            ).scalar_one()
            file_name = f"{di_id}-{name}{''.join(image.suffixes[-2:])}"
            target = images / file_name
            if not target.exists():
                try:
                    os.link(image, target)
                except OSError:
                    shutil.copyfile(image, target)
            conn.execute(
                text("UPDATE dis SET path = :p WHERE id = :d"), {"p": file_name, "d": di_id}
            )
            conn.execute(
                text("INSERT INTO di_tags (di_id, tag) VALUES (:d, 'default')"), {"d": di_id}
            )
            conn.execute(
                text("UPDATE di_runtimes SET state = 'published' WHERE di_id = :d"), {"d": di_id}
            )
        return int(di_id)

    def clean(self) -> None:
        """Stop every container of this node and remove what it made."""
        backend = self.backend()
        for vm_id in backend.list_leftovers():
            with contextlib.suppress(Exception):
                backend.kill(vm_id)
            with contextlib.suppress(Exception):
                backend.cleanup(vm_id)
        self.network().remove(guard=True)
        end_leftover(self.root / self.name / "dhcp" / "dnsmasq.pid")  # of a killed HKD
        # per-login homes stay mounted after their VMs (by design); a test that ends
        # early must not hand them to the next test on the session's storage
        for point in _mounts_under(self.storage):
            subprocess.run(["umount", point], capture_output=True, check=False)
        shutil.rmtree(self.root / self.name, ignore_errors=True)

    def clean_in_netns(self, ns: str) -> None:
        """``clean`` for a node whose HKD ran in network namespace ``ns``: its containers
        are stopped from inside ``ns`` first, the namespace is removed last."""
        lxcpath = self.root / self.name / "lxc"
        for entry in lxcpath.glob("qvd-*") if lxcpath.is_dir() else []:
            subprocess.run(["ip", "netns", "exec", ns, "lxc-stop", "-k", "-P", str(lxcpath),
                            "-n", entry.name], capture_output=True, check=False)  # fmt: skip
        self.clean()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _mounts_under(root: Path) -> list[str]:
    """Mount points below ``root`` on the host, deepest first."""
    points = [
        line.split()[1].replace("\\040", " ")
        for line in Path("/proc/mounts").read_text().splitlines()
    ]
    prefix = f"{root}/"
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _written(config: Config) -> list[str]:
    return [
        k for k in config.names()
        if (s := config.setting(k)) is not None and s.source == "test"
    ]  # fmt: skip


def add_lxc_vm(
    engine: Engine, node: LxcNode, image: Path, n: int, *, user_storage: int = 0,
    osf_id: int | None = None,
) -> tuple[int, int]:  # fmt: skip
    """A user and a VM at ``node.vm_address(n)``; a new OSF and DI unless ``osf_id``.
    Returns (vm_id, osf_id)."""
    with engine.begin() as conn:
        user_id = conn.execute(
            text("INSERT INTO users (tenant_id, login) VALUES (1, :l) RETURNING id"),
            {"l": f"user{n}-{secrets.token_hex(2)}"},
        ).scalar_one()
        if osf_id is None:
            osf_id = conn.execute(
                text(
                    "INSERT INTO osfs (tenant_id, name, memory, user_storage_size) "
                    "VALUES (1, :n, 256, :s) RETURNING id"
                ),
                {"n": f"osf{n}-{secrets.token_hex(2)}", "s": user_storage},
            ).scalar_one()
            new_osf = True
        else:
            new_osf = False
    if new_osf:
        node.import_image(engine, image, osf_id)
    with engine.begin() as conn:
        vm_id = conn.execute(
            text(
                "INSERT INTO vms (name, user_id, osf_id, ip) VALUES (:n, :u, :o, :ip) RETURNING id"
            ),
            {"n": f"vm{n}", "u": user_id, "o": osf_id, "ip": node.vm_address(n)},
        ).scalar_one()
    return vm_id, osf_id
