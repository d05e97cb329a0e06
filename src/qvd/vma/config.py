"""The VMA's own configuration: ``/etc/qvd/vma.conf`` (Java properties) over defaults.

The VMA never reads the node configuration or the database; everything it needs from
the outside arrives as ``x_start`` parameters or in this file.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from qvd.vma.properties import parse_properties

__all__ = ["DEFAULTS", "DEFAULT_CONFIG_FILE", "ConfigValueError", "VmaConfig", "load_vma_config"]

DEFAULT_CONFIG_FILE = Path("/etc/qvd/vma.conf")

DEFAULTS: dict[str, str] = {
    "internal.vm.port.vma": "3030",
    "vma.address": "0.0.0.0",  # noqa: S104 -- reached over the node bridge; calls need the secret
    "vma.secret.file": "/etc/qvd/vma.secret",
    "internal.nxagent.display": "100",
    "internal.nxagent.timeout.initiating": "20",
    "internal.nxagent.timeout.listening": "10",
    "internal.nxagent.timeout.suspending": "20",
    "internal.nxagent.timeout.stopping": "20",
    "command.nxagent": "/usr/bin/nxagent",
    "command.x-session": "/etc/X11/Xsession",
    "command.xrandr": "/usr/bin/xrandr",  # resizes a resumed session to the new geometry
    "vma.nxagent.accept": "",
    # side channels (qvd.vma.channels, qvd.vma.devices): nxagent runs this for each
    # client→VM slave connection (shared folders, USB), the channel on stdin/stdout
    "command.slave": "/usr/lib/qvd/bin/qvd-vma-slave",
    # printing (qvd.vma.printing): queues to the client's printers go into the desktop's
    # cupsd at this server (a socket path or host:port); started with `command.cupsd -f`
    # (the image's configuration) when nothing answers there
    "vma.printing.enable": "0",
    "vma.printing.cups.server": "/run/cups/cups.sock",
    "command.cupsd": "/usr/sbin/cupsd",
    "command.lpadmin": "/usr/sbin/lpadmin",
    # sound (qvd.vma.audio): the session's PulseAudio, run as the user, with its socket
    # under <path.user.runtime>/<uid>/pulse (the user's runtime directory, 0700)
    "command.pulseaudio": "/usr/bin/pulseaudio",
    "command.pactl": "/usr/bin/pactl",
    "path.user.runtime": "/run/user",
    # Opus sound for the project's client (qvd.vma.opus): GStreamer's encoder, its
    # bitrate (bit/s, 6000..510000) and frame size (ms: 5, 10, 20, 40, 60)
    "command.gst_launch": "/usr/bin/gst-launch-1.0",
    "vma.audio.opus.bitrate": "64000",
    "vma.audio.opus.frame_ms": "20",
    # browser sessions and spy (vnc_connect): x11vnc on the session's display, and the
    # in-VM viewer (nxproxy into a private Xvfb) that attaches a session no NX client holds
    "command.x11vnc": "/usr/bin/x11vnc",
    "command.nxproxy": "/usr/bin/nxproxy",
    "command.xvfb": "/usr/bin/Xvfb",
    "command.xmessage": "/usr/bin/xmessage",
    "command.autocutsel": "/usr/bin/autocutsel",
    "vma.x11vnc.args": "",  # extra x11vnc arguments (VNC auth stays required)
    "vma.vnc.viewer.display": "99",
    "vma.vnc.viewer.geometry": "1024x768",  # when x_start gave no qvd.client.geometry
    "vma.vnc.attach.timeout": "20",  # seconds for the viewer to attach the session
    "vma.nxagent.extra_args": "",  # extra NX options (k=v,k=v) for every session
    "vma.nxagent.args": "",  # extra nxagent command-line arguments
    "vma.user.default.name": "qvd",
    "vma.user.default.groups": "qvduser",
    "vma.user.home.path": "/home",
    # a persistent home drive (a device path; empty: the fw_cfg identity's home disk)
    "vma.user.home.drive": "",
    "vma.user.home.fs": "ext4",
    "vma.user.home.drive.wait": "30",  # seconds for the device to appear (udev)
    "vma.user.shell": "/bin/bash",
    "vma.default.lang": "en_US.UTF-8",
    "vma.poweroff.command": "",  # empty: exit (the VMA is init) or `systemctl poweroff`
    "vma.init": "vma",  # or "systemd": as PID 1 the VMA execs /sbin/init at once
    # the identity of a virtual machine (QEMU fw_cfg), and where its secret is kept
    "vma.identity.fw_cfg": "/sys/firmware/qemu_fw_cfg/by_name/opt/org.qvd/identity/raw",
    # with QEMU's fw_cfg device present, seconds to wait for its driver (udev loads it)
    "vma.identity.fw_cfg.device": "/sys/bus/acpi/devices/QEMU0002:00",
    "vma.identity.fw_cfg.wait": "10",
    "vma.identity.secret.file": "/run/qvd/vma.secret",
    "path.run": "/var/run/qvd",
    "path.log": "/var/log/qvd",
}


class ConfigValueError(ValueError):
    """A setting has a value of the wrong kind."""


@dataclass(frozen=True, slots=True)
class VmaConfig:
    """Settings by key (Java-properties names, as in QVD), with typed accessors."""

    values: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS))

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, DEFAULTS.get(key, default))

    def get_int(self, key: str) -> int:
        text = self.get(key).strip()
        try:
            return int(text)
        except ValueError:
            raise ConfigValueError(f"{key}: {text!r} is not an integer") from None

    def get_float(self, key: str) -> float:
        text = self.get(key).strip()
        try:
            return float(text)
        except ValueError:
            raise ConfigValueError(f"{key}: {text!r} is not a number") from None

    @property
    def port(self) -> int:
        return self.get_int("internal.vm.port.vma")

    @property
    def display(self) -> int:
        return self.get_int("internal.nxagent.display")

    @property
    def run_dir(self) -> Path:
        return Path(self.get("path.run"))

    @property
    def log_dir(self) -> Path:
        return Path(self.get("path.log"))

    def timeouts(self) -> dict[str, float]:
        """Seconds allowed in each waiting phase of nxagent (QVD's names)."""
        return {
            phase: self.get_float(f"internal.nxagent.timeout.{phase}")
            for phase in ("initiating", "listening", "suspending", "stopping")
        }

    def hook(self, kind: str, name: str) -> str | None:
        """The executable configured for ``vma.on_<kind>.<name>``, if any."""
        value = self.values.get(f"vma.on_{kind}.{name}", "").strip()
        return value or None


def load_vma_config(
    path: Path = DEFAULT_CONFIG_FILE, overrides: dict[str, str] | None = None
) -> VmaConfig:
    """Defaults, then the file (a missing file means defaults), then ``overrides``."""
    values = dict(DEFAULTS)
    with contextlib.suppress(FileNotFoundError):
        values.update(parse_properties(path.read_text(encoding="utf-8")))
    values.update(overrides or {})
    return VmaConfig(values)
