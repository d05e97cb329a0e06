"""A local account of the node cannot reach the setuid files of unpacked bases, nor
uppers and homes (all owned by root or a desktop's mapped root)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.hkd.backends.lxc import LxcBackend
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.security.desktops import node_hkd, start_vm

PARENTS = ("basefs", "overlayfs", "homefs", "images")


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` run by the local account ``nobody``. Through ``sh``: setpriv keeps its
    capabilities until its own execve, so it would look the first path up as root."""
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
         "sh", "-c", '"$@"', "sh", *argv],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_storage_parents_are_root_only_and_fixed_at_start(lxc_node: LxcNode) -> None:
    storage = lxc_node.storage
    for name in PARENTS:
        (storage / name).mkdir(parents=True, exist_ok=True)
        (storage / name).chmod(0o755)  # an existing node of the previous version
    LxcBackend(lxc_node.config())
    for name in PARENTS:
        info = (storage / name).stat()
        assert stat.S_IMODE(info.st_mode) == 0o700, name
        assert (info.st_uid, info.st_gid) == (0, 0), name


def test_a_local_account_cannot_reach_a_setuid_file_of_a_base(
    db: DatabaseTarget, engine: Engine, lxc_node: LxcNode, test_image: Path
) -> None:
    with node_hkd(db, engine, lxc_node) as hkd:
        vm_id, _ = add_lxc_vm(engine, lxc_node, test_image, 1, user_storage=16)
        start_vm(engine, hkd, vm_id)
        storage = lxc_node.storage
        setuid = [p for p in (storage / "basefs").glob("*/usr/bin/*")
                  if p.is_file() and p.stat().st_mode & stat.S_ISUID]  # fmt: skip
        assert setuid, "the test image has setuid files (su, passwd, mount…)"
        target = setuid[0]
        assert target.stat().st_uid == 0
        tried = as_nobody(str(target), "--version")
        assert tried.returncode != 0
        assert "Permission denied" in tried.stderr
        uppers = list((storage / "overlayfs").glob(f"*-{vm_id}-overlayfs/upper"))
        homes = list((storage / "homefs").iterdir())
        assert uppers
        assert homes
        for path in [storage / p for p in PARENTS] + uppers + homes + [setuid[0].parent]:
            listed = as_nobody("ls", str(path))
            assert listed.returncode != 0, f"nobody lists {path}"
            assert "Permission denied" in listed.stderr
        # the container's own directory: its mapped root may pass, a local account not
        cdir = hkd.backend.layout.container_dir(vm_id)  # type: ignore[attr-defined]
        assert as_nobody("ls", str(cdir)).returncode != 0
        assert os.stat(cdir).st_mode & 0o007 == 0
