"""Issue #16 end to end: one session with every device on, through the real client.

A real LXC node (its HKD hosting the L7R), a VM whose OSF has ``vma.audio.enable``,
``vma.printing.enable`` and ``vma.slave.enable``, and on the client machine a private
cupsd (one file-backed queue), a private PulseAudio (a null sink) and a shared folder,
all turned on in ``qvd-client``'s ``client.conf``. Then, in the desktop, as the session's
user: print (the job comes out of the client's queue), play a tone (the client's null sink
records it), write into ``~/Redirected/<share>`` (the file is on the client, its mode
kept) and read what the client wrote; suspend and resume, and everything works again;
end the session, and nothing is left in the desktop: no print queue, no mount, no
PulseAudio.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.e2e.devices import (
    SHARE,
    DeviceRig,
    device_rig,
    enable_device_properties,
    marker,
    wait_until,
)
from tests.e2e.fusenode import fuse_node
from tests.e2e.node import L7rNode, set_password, xterm_pids
from tests.hkd.conftest import runtime
from tests.hkd.lxcnode import add_lxc_vm

__all__ = ["fuse_node"]

pytestmark = pytest.mark.timeout(900)


def user_state(engine: Engine, vm_id: int) -> str:
    return str(runtime(engine, vm_id)["user_state"])


def ready(rig: DeviceRig, timeout: float = 90) -> str:
    """Wait until the desktop has each device; the desktop's print queue."""
    desk = rig.desktop
    wait_until(desk.session_running, timeout, "the X session in the desktop")
    queues = wait_until(desk.queues, timeout, f"a print queue in the desktop\n{rig.diagnose()}")
    wait_until(lambda: desk.share_mounted(SHARE), timeout,
               f"~/Redirected/{SHARE} mounted\n{rig.diagnose()}")  # fmt: skip
    wait_until(desk.tunnel_sinks, timeout, f"the desktop's sound tunnel\n{rig.diagnose()}")
    return str(queues[0])  # type: ignore[index]


def round_trip(rig: DeviceRig, queue: str, tag: str) -> None:
    desk = rig.desktop
    mark = marker()
    desk.print_text(queue, mark)
    assert mark.encode() in rig.wait_job(mark.encode(), 60)
    tone = f"/tmp/qvd-tone-{tag}.wav"
    desk.write_tone(tone, 1.0)
    start, _ = desk.timed("paplay", tone, clock="monotonic")
    heard = rig.recorder.wait_for_sound(30, since=start)
    assert heard is not None, f"no sound at the client's sink\n{rig.diagnose()}"
    # the desktop writes: the client has the bytes and the mode
    name = f"from-desktop-{tag}.bin"
    inside = f"{desk.share_path(SHARE)}/{name}"
    desk.check("python3", "-c",
               "import os, sys; open(sys.argv[1], 'wb').write(os.urandom(256 * 1024)); "
               "os.chmod(sys.argv[1], 0o640)", inside)  # fmt: skip
    digest = desk.check("sha256sum", inside).split()[0]
    local = rig.share / name
    wait_until(lambda: local.exists() and _sha256(local) == digest, 30,
               "the desktop's file on the client")  # fmt: skip
    assert local.stat().st_mode & 0o777 == 0o640
    # the client writes: the desktop reads it
    text_ = f"written on the client {marker()}\n"
    (rig.share / f"from-client-{tag}.txt").write_text(text_)
    (rig.share / f"from-client-{tag}.txt").chmod(0o604)
    out = desk.check("cat", f"{desk.share_path(SHARE)}/from-client-{tag}.txt")
    assert out == text_
    mode = desk.check("stat", "-c", "%a", f"{desk.share_path(SHARE)}/from-client-{tag}.txt")
    assert mode.strip() == "604"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def suspended_clean(rig: DeviceRig) -> bool:
    """While suspended the desktop has no queue to the client, no share and no tunnel."""
    desk = rig.desktop
    shares = [point for point, _ in desk.mounts() if "/Redirected/" in point]
    return not (desk.queues() or shares or desk.tunnel_sinks())


def test_print_sound_share_suspend_resume_stop(
    engine: Engine, fuse_node: L7rNode, test_image: Path, tmp_path: Path
) -> None:
    node = fuse_node
    lxc = node.lxc
    vm_id, osf_id = add_lxc_vm(engine, lxc, test_image, 1)
    enable_device_properties(engine, osf_id)
    login = set_password(engine, vm_id, "s3cret!")
    with device_rig(
        tmp_path / "client", lxcpath=lxc.config().get_path("path.run.lxc"), l7r_port=node.port,
        vm_id=vm_id, login=login, password="s3cret!",
    ) as rig:  # fmt: skip
        desk = rig.desktop
        wait_until(lambda: user_state(engine, vm_id) == "connected", 120,
                   f"the session connected\n{rig.diagnose()}")  # fmt: skip
        queue = ready(rig)
        round_trip(rig, queue, "first")
        session = xterm_pids(lxc, vm_id)

        # suspend: the client goes away, the desktop waits
        rig.client.stop()
        wait_until(lambda: user_state(engine, vm_id) == "disconnected", 30, "disconnected")
        wait_until(lambda: suspended_clean(rig), 30,
                   f"the devices put away while suspended\n{rig.diagnose()}")  # fmt: skip
        # resume: a new client process, the same X session, every device again
        rig.client.start()
        wait_until(lambda: user_state(engine, vm_id) == "connected", 90,
                   f"connected again\n{rig.diagnose()}")  # fmt: skip
        assert xterm_pids(lxc, vm_id) == session
        queue = ready(rig)
        round_trip(rig, queue, "resumed")

        # stop: the user's session ends (its X session exits), nothing is left
        rig.client.stop()
        wait_until(lambda: user_state(engine, vm_id) == "disconnected", 30, "disconnected")
        for pid in session:
            desk.root("kill", str(pid))
        wait_until(lambda: not desk.session_running(), 60, "the X session gone")

        def clean() -> bool:
            return (
                not desk.root("lpstat", "-e").stdout.split()
                and not [m for m in desk.mounts() if "/Redirected/" in m[0]]
                and not desk.pulse_running()
            )

        wait_until(clean, 60, f"nothing left in the desktop\n{rig.diagnose()}")
