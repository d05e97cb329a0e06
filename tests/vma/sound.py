"""A session's sound device on this machine, without a container: the VMA's
``AudioDevice`` runs a real PulseAudio as an unprivileged user (``nobody``, with a home
of the test's), tunnelling to a private "client" PulseAudio whose anonymous TCP port
stands for the NX multimedia port (display = port - 7000). Used by tests/vma/test_audio.py
and tests/security/test_audio_*.py."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qvd.client.devices import free_port
from qvd.vma.audio import AudioDevice
from qvd.vma.channels import ChannelPlan
from qvd.vma.config import VmaConfig
from qvd.vma.devices import DeviceContext
from qvd.vma.session import user_environment
from tests.pulse import PrivatePulse

__all__ = ["SoundBench", "as_user", "sound_bench"]


def as_user(
    user: pwd.struct_passwd, argv: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd="/", user=user.pw_uid,
        group=user.pw_gid, extra_groups=[], timeout=timeout, check=False,
    )  # fmt: skip


@dataclass
class SoundBench:
    device: AudioDevice
    ctx: DeviceContext
    client: PrivatePulse  # the client machine's PulseAudio (null sink)
    root: Path

    @property
    def user(self) -> pwd.struct_passwd:
        return self.ctx.user

    def user_env(self) -> dict[str, str]:
        """A desktop program's environment (with the device's PULSE_SERVER)."""
        return {**self.ctx.env, **self.device.session_env(self.ctx)}

    def play(self, wav: Path) -> subprocess.CompletedProcess[str]:
        return as_user(self.user, ["paplay", str(wav)], self.user_env())

    def pactl(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return as_user(self.user, ["pactl", *argv], self.user_env())


@contextmanager
def sound_bench(plan: ChannelPlan | None = None) -> Iterator[SoundBench]:
    root = Path(tempfile.mkdtemp(prefix="qvdsnd-", dir="/tmp"))  # short socket paths
    root.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    home = root / "home"
    home.mkdir(mode=0o700)
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    user = pwd.struct_passwd(
        ("nobody", "x", nobody.pw_uid, nobody.pw_gid, "", str(home), "/bin/sh")
    )
    for name in ("run", "log"):
        (root / name).mkdir()
    config = VmaConfig({"path.user.runtime": str(root / "user"), "path.run": str(root / "run")})
    port = free_port()
    client = PrivatePulse(tcp_port=port)
    env = user_environment(user, config)
    env["DISPLAY"] = ":0"
    ctx = DeviceContext(
        user=user, display=port - 7000, plan=plan or ChannelPlan(audio=True), params={},
        setting=config.get, run_dir=root / "run", log_dir=root / "log", env=env,
    )  # fmt: skip
    device = AudioDevice()
    try:
        yield SoundBench(device=device, ctx=ctx, client=client, root=root)
    finally:
        device.stopped(ctx)
        client.close()
        shutil.rmtree(root, ignore_errors=True)
