"""Egress end to end with real desktops: `qvd hkd` as a process inside a node namespace
whose uplink leads to a namespace that stands for the outside (``tests.hkd.egressnet``),
real LXC containers started by it from the test image. A desktop of an OSF that may go
out gets a default route through its node and reaches the outside, NATed to the
uplink's address; a desktop of an OSF whose property denies it has no route and reaches
nothing. No packet leaves the machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.hkd.egress import EGRESS_PROPERTY, EgressFilter
from tests.hkd.conftest import add_host, command, state_of, wait_for
from tests.hkd.egressnet import PUBLIC, UPLINK_NODE, egress_lab
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.hkd.test_daemon_process import HkdProcess, processes

__all__ = ["processes"]  # a fixture, used by name

pytestmark = [pytest.mark.timeout(600), pytest.mark.root]

_CONNECT = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(3)\n"
    "try:\n"
    "    s.connect((sys.argv[1], int(sys.argv[2]))); print(s.recv(64).decode().strip())\n"
    "except OSError as e:\n"
    "    print('failed', e.errno)\n"
)


def _in_desktop(ns: str, node: LxcNode, vm_id: int, *argv: str) -> str:
    """``argv`` in the desktop, by lxc-attach run from its node's namespace (where the
    container's command socket is)."""
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", "lxc-attach", "-P",
         str(node.root / node.name / "lxc"), "-n", f"qvd-{vm_id}", "--", *argv],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def _default_gateway(ns: str, node: LxcNode, vm_id: int) -> str | None:
    """The desktop's default route, read from /proc/net/route (no ip tool needed)."""
    for line in _in_desktop(ns, node, vm_id, "cat", "/proc/net/route").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            raw = bytes.fromhex(fields[2])[::-1]
            return ".".join(str(b) for b in raw)
    return None


def _deny_by_property(engine: Engine, osf_id: int) -> None:
    with engine.begin() as conn:
        prop = conn.execute(
            text("INSERT INTO properties_list (key, tenant_id) VALUES (:k, 1) RETURNING id"),
            {"k": EGRESS_PROPERTY},
        ).scalar_one()
        assignment = conn.execute(
            text(
                "INSERT INTO qvd_object_properties_list (property_id, qvd_object) "
                "VALUES (:p, 'osf') RETURNING id"
            ),
            {"p": prop},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO osf_properties (osf_id, property_id, value) VALUES (:o, :p, 'deny')"),
            {"o": osf_id, "p": assignment},
        )


def test_desktops_go_out_as_their_osf_says(
    db: DatabaseTarget, engine: Engine, run_dir: Path, lxc_storage: Path, test_image: Path,
    processes: list[HkdProcess],
) -> None:  # fmt: skip
    node = LxcNode.create(run_dir, lxc_storage, "node-egress")
    with egress_lab() as lab:
        try:
            host = add_host(engine, node.name, node.host_address)
            conf = node.config_file(**{
                "vm.network.egress.enable": "1", "vm.network.egress.uplink": lab.uplink,
            })  # fmt: skip
            hkd = HkdProcess(conf, db, run_dir / "hkd-egress.log", netns=lab.node)
            processes.append(hkd)
            hkd.wait_running()
            out_vm, _ = add_lxc_vm(engine, node, test_image, 1)
            in_vm, in_osf = add_lxc_vm(engine, node, test_image, 2)
            _deny_by_property(engine, in_osf)
            for vm_id in (out_vm, in_vm):
                command(engine, vm_id, "start", host.id)
            for vm_id in (out_vm, in_vm):
                wait_for(lambda v=vm_id: state_of(engine, v) == "running", 120,  # type: ignore[misc]
                         f"VM {vm_id} running")  # fmt: skip
            echo = lab.echo(lab.outside, PUBLIC)
            assert _default_gateway(lab.node, node, out_vm) == node.host_address
            assert _default_gateway(lab.node, node, in_vm) is None
            log = hkd.log.read_text()
            assert f"VM {out_vm} may go out" in log
            assert f"VM {in_vm} stays in (OSF property {EGRESS_PROPERTY}=deny)" in log
            port = str(echo.port)
            answer = _in_desktop(lab.node, node, out_vm, "python3", "-c", _CONNECT, PUBLIC, port)
            assert answer == f"from {UPLINK_NODE}", hkd.log.read_text()[-3000:]
            refused = _in_desktop(lab.node, node, in_vm, "python3", "-c", _CONNECT, PUBLIC, port)
            assert refused.startswith("failed")
            assert echo.seen == [UPLINK_NODE]
            allowed = EgressFilter(node.network().table)
            assert set(lab.in_node(allowed.allowed).values()) == {node.vm_address(1)}
            # stopping the desktop takes its address out of the set
            command(engine, out_vm, "stop")
            wait_for(lambda: state_of(engine, out_vm) == "stopped", 120, "VM stopped")
            assert lab.in_node(EgressFilter(node.network().table).allowed) == {}
        finally:
            for p in processes:
                p.stop()
            node.clean_in_netns(lab.node)
