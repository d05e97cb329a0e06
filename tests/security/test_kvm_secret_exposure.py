"""Attack test: read a KVM desktop's VMA secret, or steer its QEMU, from outside it.

- Any local user reads every process's command line (/proc/<pid>/cmdline): the secret
  must not be on QEMU's. It goes to the guest through fw_cfg from a 0600 root file in a
  0700 root directory.
- A VM name is data an administrator (or a tenant admin) types: a name written as QEMU
  options or kernel arguments (commas, ``-append``, ``init=``) must reach neither QEMU's
  arguments nor the guest's kernel command line; the guest's host name is the name only
  when it is a plain host name.
- A QEMU taken over by its guest runs as the unprivileged ``vm.kvm.user`` under seccomp:
  it cannot open another VM's identity file or disks (all root's, opened by each QEMU
  before it dropped its privileges).
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.hkd.backends.hostfs import write_private
from qvd.hkd.backends.kvm.identity import hostname_for, identity_json
from tests.hkd.backends.kvm.node import KvmNode, kvm_node_made

pytestmark = [pytest.mark.root, pytest.mark.slow]

HOSTILE = "x,file=/etc/shadow -append init=/bin/sh"


@pytest.fixture
def node(root_only: None) -> Iterator[KvmNode]:
    with kvm_node_made() as made:
        yield made


def _as_user(user: str, path: Path) -> int:
    """Exit status of ``cat path`` run as ``user`` (0: it could read it)."""
    entry = pwd.getpwnam(user)

    def drop() -> None:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    done = subprocess.run(
        ["cat", str(path)],
        preexec_fn=drop,
        capture_output=True,
        check=False,
    )
    return done.returncode


def test_the_secret_and_a_hostile_name_stay_off_the_command_line(node: KvmNode) -> None:
    backend = node.backend()
    secret = "f" * 24 + "secret-of-vm-one" + "0" * 24
    victim = node.spec(30001, name=HOSTILE, secret=secret)
    other = node.spec(30002)
    backend.prepare(victim)
    backend.prepare(other)
    pid = backend.start(victim)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        assert not any(secret in word for word in argv)
        assert not any("shadow" in word or "/bin/sh" in word for word in argv)
        assert hostname_for(30001, HOSTILE) == "qvd-30001"  # what the identity carries
        append = argv[argv.index("-append") + 1]
        assert append == "console=ttyS0 quiet panic=-1"  # the image's own, and ours
        assert not (node.run_kvm / "30001" / "identity.json").exists(), "secret left on disk"
        assert (node.run_kvm / "30001").stat().st_mode & 0o777 == 0o700
        # what the QEMU user could open if its guest took QEMU over: another VM's
        # identity (prepared, not started: the file a starting QEMU would read) and disks
        identity = node.run_kvm / "30002" / "identity.json"
        write_private(identity, identity_json(30002, "vm", "other-secret", None))
        user = backend.user
        assert _as_user(user, identity) != 0, "the QEMU user reads another VM's secret"
        assert _as_user(user, node.overlays / "7-30002-overlay.qcow2") != 0
        assert _as_user(user, node.homes / "30002-data.qcow2") != 0
    finally:
        backend.kill(30001)
        backend.cleanup(30001)
        backend.cleanup(30002)
