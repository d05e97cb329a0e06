"""A KVM desktop, end to end (issue #13): `qvd-client` → L7R → HKD → QEMU (TCG here)
→ the VMA started by the guest's systemd → nxagent → pixels on the client's Xvfb.

One guest at a time, booted twice (a third boot only if the HKD's restart cleans the
VM instead of adopting it), each boot within the 180 s budget of TCG:

1. the qcow2 test image is imported through the admin API's staging import, and the
   OSF, user and VM are made through the API, as for LXC; the client's connect boots
   the VM; its xterm is drawn on the client's display; the node's dnsmasq serves the
   DB row's MAC and IP; the user types a file into the home, one into the root file
   system and the guest's own DHCP lease into the home; the VM is stopped: nothing is
   left (no QEMU, no tap, no overlay) but the home disk, which holds the files, the
   lease saying the address came from the node's DHCP server;
2. a start is asked, and while the guest boots the HKD is killed with SIGKILL; the
   restarted HKD adopts the QEMU (the same PID) or cleans it and boots again;
3. the user connects again and types what the home holds into a new file and whether
   the root's file is still there: the home came back, the root overlay was fresh.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.config import Config
from qvd.db import DatabaseTarget
from qvd.di.screenshot import Screenshot
from qvd.di.testbed import Xvfb
from tests.e2e.keys import type_text
from tests.e2e.kvmnode import (
    KvmDesktop,
    KvmNode,
    copy_evidence,
    dhcp_hosts,
    guest_lease,
    home_file,
    kvm_node,
    overlays,
    qemu_argv,
    qemu_pids,
    tap_links,
    vm_mac,
    vma_secret,
)
from tests.e2e.node import Client
from tests.hkd.conftest import command, runtime, state_of, wait_for
from tests.hkd.lxcnode import LxcNode
from tests.vma.helpers import wait_for_xterm, xterm_visible

pytestmark = pytest.mark.timeout(1200)

BOOT_BUDGET = 180  # seconds from the start asked to the VMA answering, under TCG
STOP_DEADLINE = 120  # the guest's own shutdown, under TCG


def connect(node: KvmNode, desk: KvmDesktop, display: str, home: Path) -> Client:
    env = {**os.environ, "DISPLAY": display, "HOME": str(home), "NX_ROOT": str(home / "nx")}
    argv = ["--host", "127.0.0.1", "--port", str(node.port), "--user", desk.login,
            "--password-file", str(desk.password_file), "--vm", str(desk.vm_id), "--insecure",
            "--link", "lan"]  # fmt: skip
    return Client(argv, env)


def centre(shot: Screenshot) -> tuple[int, int]:
    box = shot.bright_box()
    assert box is not None
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def diagnose(node: KvmNode, desk: KvmDesktop, client: Client | None, evidence: Path) -> str:
    """The client's output, the tails of the HKD's, QEMU's and dnsmasq's logs and the
    guest's serial console (kept with the evidence too)."""
    parts = [f"client:\n{client.output()}"] if client is not None else []
    backend = node.backend()
    console = getattr(backend, "console", None)  # the KVM backend's diagnostics
    if callable(console):
        try:
            text_ = str(console(desk.vm_id))
        except Exception as exc:  # a diagnostic, never the failure
            text_ = f"(no console: {exc})"
        (evidence / f"console-{desk.vm_id}.txt").write_text(text_)
        parts.append(f"guest console:\n{text_[-3000:]}")
    backend.close()
    for hkd in node.processes:
        parts.append(f"{hkd.log.name}:\n{hkd.log.read_text()[-3000:]}")
    for log in [*node.run.glob("kvm/**/*.log"), *node.run.glob("dhcp/*.log")]:
        copy_evidence(log, evidence)
        parts.append(f"{log}:\n{log.read_text(errors='replace')[-2000:]}")
    return "\n".join(parts)


def see_the_desktop(
    node: KvmNode, desk: KvmDesktop, xvfb: Xvfb, home: Path, evidence: Path, shot_name: str
) -> tuple[Client, Screenshot]:
    client = connect(node, desk, xvfb.display, home)
    try:

        def booted() -> bool:
            return state_of(node.engine, desk.vm_id) == "running" or client.proc.poll() is not None

        wait_for(booted, BOOT_BUDGET, f"VM {desk.vm_id} running within the boot budget")
        shot = wait_for_xterm(xvfb.display, 90)
        shot.save_png(evidence / shot_name)
        assert xterm_visible(shot), diagnose(node, desk, client, evidence)
    except BaseException:
        print(diagnose(node, desk, client, evidence))
        client.close()
        raise
    return client, shot


def stop_and_check_nothing_left(node: KvmNode, desk: KvmDesktop, config: Config) -> None:
    """Stop the VM; only its home disk stays."""
    command(node.engine, desk.vm_id, "stop")
    wait_for(lambda: state_of(node.engine, desk.vm_id) == "stopped", STOP_DEADLINE, "stopped")
    backend = node.backend()
    try:
        assert backend.list_leftovers() == set()
        assert not backend.is_alive(desk.vm_id)
    finally:
        backend.close()
    assert qemu_pids(desk.vm_id) == []
    assert tap_links(config, desk.vm_id) == []
    assert overlays(config, desk.vm_id) == []


def home_disk(config: Config, vm_id: int) -> Path:
    (disk,) = config.get_path("path.storage.homes").glob(f"{vm_id}-*.qcow2")
    return disk


def test_kvm_desktop_boots_keeps_its_home_and_survives_a_kill_9_of_the_hkd(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image_qcow2: Path,
    tmp_path: Path, evidence_dir: Path,
) -> None:  # fmt: skip
    token = secrets.token_hex(4)
    xvfb = Xvfb()
    clients: list[Client] = []
    try:
        with kvm_node(db, engine, lxc_node) as node:
            config = node.config()
            desk = node.add_desktop(test_image_qcow2)
            first_hkd = node.start_hkd("first")

            # 1. the client's connect boots the VM, the desktop is drawn
            client, shot = see_the_desktop(node, desk, xvfb, tmp_path / "c1", evidence_dir,
                                           "kvm-desktop.png")  # fmt: skip
            clients.append(client)
            (pid,) = qemu_pids(desk.vm_id)
            accel = next(a for a in qemu_argv(pid) if a.startswith(("tcg", "accel=tcg")))
            assert "tb-size" in accel
            # the guest's secret reaches it by fw_cfg from a root-only file (removed once
            # QEMU has read it), never by a command line or an environment another
            # local user could read through /proc
            secret = vma_secret(engine, desk.vm_id).encode()
            assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert secret not in Path(f"/proc/{pid}/environ").read_bytes()
            holders = [p for p in node.run.rglob("*") if p.is_file() and secret in p.read_bytes()]
            assert [p for p in holders if p.stat().st_mode & 0o077] == []
            assert runtime(engine, desk.vm_id)["vm_address"] == desk.address
            # the node's DHCP serves the DB row's MAC → IP
            assert dhcp_hosts(node.run).get(vm_mac(desk.address)) == desk.address

            line = (f"cd; echo home-{token} > persist.txt; echo root-{token} > /var/tmp/rootmark; "
                    "cat /run/systemd/netif/leases/* > lease.txt")  # fmt: skip
            type_text(xvfb.display, f"{line}; sync\n", at=centre(shot))
            time.sleep(3)  # the shell runs the line; the poweroff below syncs again
            client.close()
            stop_and_check_nothing_left(node, desk, config)
            disk = home_disk(config, desk.vm_id)
            assert home_file(disk, "persist.txt", tmp_path) == f"home-{token}\n"
            # the guest's own lease: its address came by DHCP from the node's server
            lease = guest_lease(home_file(disk, "lease.txt", tmp_path) or "")
            assert lease.get("ADDRESS") == desk.address, lease
            assert lease.get("SERVER_ADDRESS") == lxc_node.host_address, lease

            # 2. kill -9 of the HKD while the guest boots: adopted or cleaned
            command(engine, desk.vm_id, "start", node.host_id)
            wait_for(lambda: qemu_pids(desk.vm_id) != [], 60, "QEMU started")
            (booting,) = qemu_pids(desk.vm_id)
            assert state_of(engine, desk.vm_id) == "starting"
            first_hkd.kill9()
            node.start_hkd("second")
            wait_for(lambda: state_of(engine, desk.vm_id) == "running", 2 * BOOT_BUDGET,
                     "running after the HKD's restart")  # fmt: skip
            now = qemu_pids(desk.vm_id)
            assert len(now) == 1
            if now != [booting]:  # cleaned and booted again: the first QEMU is gone
                assert not Path(f"/proc/{booting}").exists()
            print(f"after kill -9 of the HKD: {'adopted' if now == [booting] else 'cleaned'}")
            assert len(tap_links(config, desk.vm_id)) == 1
            assert len(overlays(config, desk.vm_id)) == 1

            # 3. the home came back across the restart and the fresh overlay
            client, shot = see_the_desktop(node, desk, xvfb, tmp_path / "c2", evidence_dir,
                                           "kvm-desktop-again.png")  # fmt: skip
            clients.append(client)
            line = "cd; cat persist.txt > again.txt; ls /var/tmp/rootmark > rootcheck.txt 2>&1"
            type_text(xvfb.display, f"{line}; sync\n", at=centre(shot))
            time.sleep(3)
            client.close()
            stop_and_check_nothing_left(node, desk, config)
            assert home_file(disk, "again.txt", tmp_path) == f"home-{token}\n"
            assert "No such file" in (home_file(disk, "rootcheck.txt", tmp_path) or "")
            assert node.processes[-1].stop() == 0
    finally:
        for client in clients:
            client.close()
        xvfb.close()
