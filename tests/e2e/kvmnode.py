"""What the KVM end-to-end tests share: a node whose HKD runs ``vm.hypervisor = kvm``
(QEMU under TCG here) as a real process hosting the L7R, its DI, OSF, user and VM made
through the admin API like any other, and the host-side views a test checks: the QEMU
process of a VM, its tap, its overlay, the files of its home disk, its DHCP lease."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from qvd.api import create_app
from qvd.config import Config
from qvd.db import DatabaseTarget
from qvd.db.vmasecret import derive_vma_secret, master_secret
from qvd.hkd.addressing import host_device, mac_for
from qvd.hkd.backends import Backend, load_backend
from tests.api.asgi import asgi_client
from tests.api.conftest import Api, add_admin, api_config
from tests.conftest import free_port
from tests.hkd.conftest import add_host
from tests.hkd.lxcnode import LxcNode
from tests.hkd.test_daemon_process import HkdProcess

__all__ = [
    "KVM_SETTINGS",
    "KvmDesktop",
    "KvmNode",
    "dhcp_hosts",
    "guest_lease",
    "home_file",
    "kvm_node",
    "qemu_pids",
    "tap_links",
    "vma_secret",
]

# QEMU under TCG (/dev/kvm is PVM here); a fence far longer than an HKD restart, so a
# VM survives the kill -9 of its HKD and can be adopted
KVM_SETTINGS = {
    "vm.hypervisor": "kvm",
    "vm.kvm.accel": "tcg",
    "internal.hkd.agent.ticker.timeout": "15",
    "internal.hkd.cluster.node.timeout": "20",
}
PASSWORD = "kvm-desk-pw"  # a throwaway database's user


@dataclass
class KvmDesktop:
    vm_id: int
    login: str
    address: str
    password_file: Path


@dataclass
class KvmNode:
    """A KVM node on the LXC test node's paths and network (its bridge, /24, storage)."""

    lxc: LxcNode
    db: DatabaseTarget
    engine: Engine
    host_id: int
    port: int
    processes: list[HkdProcess]

    @property
    def run(self) -> Path:
        return self.lxc.root / self.lxc.name

    def config(self) -> Config:
        return self.lxc.config(**self.settings())

    def settings(self) -> dict[str, str]:
        return {**KVM_SETTINGS, "l7r.address": "127.0.0.1", "l7r.port": str(self.port)}

    def backend(self) -> Backend:
        """A backend object of its own: it sees what the HKD's runs (adoption's view)."""
        return load_backend("kvm", config=self.config())

    def start_hkd(self, label: str) -> HkdProcess:
        conf = self.lxc.config_file(**self.settings())
        hkd = HkdProcess(conf, self.db, self.lxc.root / f"hkd-{label}.log")
        self.processes.append(hkd)
        hkd.wait_running()
        return hkd

    def api_config(self) -> Config:
        """The admin API's view of the same storage and VM network."""
        return api_config(self.lxc.root, **{
            "path.storage.root": str(self.lxc.storage),
            "vm.network.ip.start": str(self.lxc.subnet.network_address + 100),
            "vm.network.netmask": str(self.lxc.subnet.prefixlen),
        })  # fmt: skip

    def add_desktop(self, image: Path, *, memory_mib: int = 512, home_mib: int = 256) -> KvmDesktop:
        """Import ``image`` from staging, then an OSF, a user and a VM, all through the
        admin API's QVD action face (as ``qa`` does for any hypervisor)."""
        with Session(self.engine) as session, session.begin():
            add_admin(session, "root", 0)
        staged = f"kvm-e2e-{secrets.token_hex(3)}.qcow2"
        staging = self.lxc.storage / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        os.link(image, staging / staged)
        login = f"kvmuser{secrets.token_hex(2)}"
        try:
            with asgi_client(create_app(self.api_config(), self.engine)) as client:
                api = Api(client)
                root = api.login("root")
                osf = _ok(api.act("osf_create", sid=root, arguments={
                    "name": f"kvm-{secrets.token_hex(2)}", "tenant_id": 1,
                    "memory": memory_mib, "user_storage": home_mib,
                }))  # fmt: skip
                r = client.post("/api/di/staging", json={
                    "action": "di_create", "sid": root,
                    "arguments": {"disk_image": staged, "osf_id": osf},
                })  # fmt: skip
                assert r.json()["status"] == 0, r.text
                user = _ok(api.act("user_create", sid=root, arguments={
                    "name": login, "password": PASSWORD, "tenant_id": 1,
                }))  # fmt: skip
                vm_id = _ok(api.act("vm_create", sid=root, arguments={
                    "name": "kvm-desk", "user_id": user, "osf_id": osf, "di_tag": "head",
                }))  # fmt: skip
        finally:
            (staging / staged).unlink(missing_ok=True)
        with self.engine.begin() as conn:
            address = conn.execute(
                text("SELECT ip FROM vms WHERE id = :v"), {"v": vm_id}
            ).scalar_one()
        password_file = self.run / f"password-{vm_id}"
        password_file.write_text(PASSWORD + "\n")
        forget_home(self.config(), vm_id)  # VM ids recur across test databases
        return KvmDesktop(vm_id, login, str(address), password_file)

    def clean(self) -> None:
        """End the HKDs, then kill and clean whatever VM the node still has."""
        for hkd in self.processes:
            hkd.stop()
        backend = self.backend()
        for vm_id in backend.list_leftovers():
            with contextlib.suppress(Exception):
                backend.kill(vm_id)
            with contextlib.suppress(Exception):
                backend.cleanup(vm_id)
            forget_home(self.config(), vm_id)
        backend.close()


def _ok(answer: dict[str, object]) -> int:
    assert answer["status"] == 0, answer
    rows = answer["rows"]
    assert isinstance(rows, list)
    return int(rows[0]["id"])


@contextlib.contextmanager
def kvm_node(db: DatabaseTarget, engine: Engine, lxc: LxcNode) -> Iterator[KvmNode]:
    host = add_host(engine, lxc.name, lxc.host_address)
    node = KvmNode(lxc=lxc, db=db, engine=engine, host_id=host.id, port=free_port(), processes=[])
    node.run.mkdir(parents=True, exist_ok=True)
    try:
        yield node
    finally:
        node.clean()


def forget_home(config: Config, vm_id: int) -> None:
    """Remove the home disk of ``vm_id`` from the (session-shared) storage."""
    for disk in config.get_path("path.storage.homes").glob(f"{vm_id}-*"):
        disk.unlink(missing_ok=True)


# ---- host-side views ------------------------------------------------------------------------
def qemu_pids(vm_id: int) -> list[int]:
    """PIDs of the QEMU processes named ``qvd-<vm_id>`` (``-name``), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"qemu-system-x86_64"):
            continue
        names = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == b"-name"]
        if any(n.split(b",")[0] in (f"qvd-{vm_id}".encode(), f"guest=qvd-{vm_id}".encode())
               for n in names):  # fmt: skip
            found.append(int(entry.name))
    return sorted(found)


def qemu_argv(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def tap_links(config: Config, vm_id: int) -> list[str]:
    """The VM's host device (its tap) if it exists, and every port of the node's
    bridge: empty when the VM left no link behind."""
    device = host_device(config.get("internal.vm.network.device.prefix"), vm_id)
    found = []
    if subprocess.run(["ip", "link", "show", device], capture_output=True).returncode == 0:
        found.append(device)
    ports = subprocess.run(
        ["ip", "-j", "link", "show", "master", config.get("vm.network.bridge")],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    found += [link["ifname"] for link in json.loads(ports or "[]") if link["ifname"] != device]
    return found


def overlays(config: Config, vm_id: int) -> list[Path]:
    return sorted(config.get_path("path.storage.overlays").glob(f"*-{vm_id}-overlay.qcow2"))


def dhcp_hosts(run: Path) -> dict[str, str]:
    """MAC → IPv4 of the static leases the node's dnsmasq serves (its hosts file under
    ``path.run``/dhcp: ``MAC[,set:TAG],IP[,NAME]`` per line)."""
    hosts: dict[str, str] = {}
    path = run / "dhcp" / "hosts"
    for line in path.read_text().splitlines() if path.is_file() else []:
        fields = line.split(",")
        address = next((f for f in fields[1:] if re.fullmatch(r"[0-9.]+", f)), None)
        if address is not None:
            hosts[fields[0].lower()] = address
    return hosts


def guest_lease(text_: str) -> dict[str, str]:
    """The fields of a systemd-networkd lease file (``KEY=VALUE`` lines)."""
    return dict(line.split("=", 1) for line in text_.splitlines() if "=" in line)


def vma_secret(engine: Engine, vm_id: int) -> str:
    """The VMA secret of the VM's current run (as the HKD and the L7R derive it)."""
    with engine.connect() as conn:
        attempts = conn.execute(
            text("SELECT run_attempts FROM vm_counters WHERE vm_id = :v"), {"v": vm_id}
        ).scalar_one()
        return derive_vma_secret(master_secret(conn), vm_id, int(attempts))


def vm_mac(address: str) -> str:
    return mac_for(address)


def home_file(disk: Path, name: str, work: Path) -> str | None:
    """The text of the file ``name`` in the user's directory of a (stopped VM's) home
    disk, read without mounting it: qemu-img to a raw copy, then debugfs."""
    raw = work / f"home-{secrets.token_hex(3)}.raw"
    try:
        subprocess.run(
            ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(disk), str(raw)],
            check=True, capture_output=True,
        )  # fmt: skip
        listing = _debugfs(raw, "ls -p /")
        dirs = [
            fields[5] for fields in (line.split("/") for line in listing.splitlines())
            if len(fields) > 6 and fields[2].startswith("04") and fields[5] not in {".", ".."}
        ]  # fmt: skip
        for candidate in [f"/{d}/{name}" for d in dirs] + [f"/{name}"]:
            done = subprocess.run(
                ["debugfs", "-R", f"cat {candidate}", str(raw)], capture_output=True, text=True,
                check=False,
            )  # fmt: skip
            if done.returncode == 0 and "not found" not in done.stderr:
                return done.stdout
        return None
    finally:
        raw.unlink(missing_ok=True)


def _debugfs(raw: Path, request: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", request, str(raw)], capture_output=True, text=True, check=True
    ).stdout


def copy_evidence(source: Path, evidence: Path) -> None:
    """Keep a file (a console log, an HKD log) with the test's evidence, if it exists."""
    with contextlib.suppress(OSError):
        shutil.copyfile(source, evidence / source.name)
