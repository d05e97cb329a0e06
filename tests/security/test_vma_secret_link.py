"""Root in a desktop with a persistent root layer replaces /etc/qvd with a link to a
node directory, hoping the HKD writes (and chmods) through it as root at the next start.
The HKD refuses the link: nothing is written on the node, the VM fails with the reason."""

from __future__ import annotations

import secrets
import shutil
import stat
from pathlib import Path

from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.hkd.backends.lxc import LxcBackend
from tests.hkd.conftest import command, runtime, state_of, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.security.desktops import node_hkd, run_in, start_vm


def test_a_linked_etc_qvd_in_a_persistent_upper_is_refused(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    victim = Path(f"/tmp/qvd-victim-{secrets.token_hex(4)}")
    victim.mkdir(mode=0o700)
    try:
        with node_hkd(db, engine, lxc_node, **{"vm.overlay.persistent": "1"}) as hkd:
            backend = hkd.backend
            assert isinstance(backend, LxcBackend)
            vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1)
            start_vm(engine, hkd, vm_id)
            planted = run_in(backend, vm_id, f"rm -rf /etc/qvd && ln -s {victim} /etc/qvd")
            assert planted.code == 0, planted.out
            upper = next(backend.layout.overlayfs.glob(f"*-{vm_id}-overlayfs/upper"))
            assert (upper / "etc/qvd").is_symlink()  # the link the HKD will meet
            command(engine, vm_id, "stop")
            wait_for(lambda: state_of(engine, vm_id) == "stopped", 60, "stopped")
            command(engine, vm_id, "start", hkd.host.id)  # type: ignore[union-attr]
            wait_for(lambda: runtime(engine, vm_id)["last_error"] is not None, 60, "refusal")
            reason = str(runtime(engine, vm_id)["last_error"])
        assert "etc/qvd is a link or not a directory: refused" in reason, reason
        assert list(victim.iterdir()) == []
        assert stat.S_IMODE(victim.stat().st_mode) == 0o700  # not chmodded either
    finally:
        shutil.rmtree(victim, ignore_errors=True)
