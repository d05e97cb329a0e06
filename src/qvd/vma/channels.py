"""Which NX side channels a session opens (pure: client parameters and VMA settings in,
nxagent options out).

A channel is on when the desktop allows it and, where the original asked the client too,
when the client asks for it (reference §3.5, §4.3):

- **sound** (``media=1``): ``vma.audio.enable`` (a property may override the VMA's file);
  the client decides by giving nxproxy a ``media=`` port or not; the channel carries Opus
  (``ChannelPlan.opus``) only when the client sends ``qvd.client.audio.codec=opus`` with
  ``qvd.client.audio.compression.enable`` — a parameter only the project's client sends:
  the original's clients (which send the flag alone) keep the PulseAudio tunnel their
  side speaks;
- **printing** (``cups=2000+display``): ``vma.printing.enable`` *and* the client's
  ``qvd.client.printing.enabled``;
- **slave channel** (``slave=1``): ``vma.slave.enable``; needed for shared folders and USB.

Browser sessions (``qvd.client.transport=vnc``) open none: the in-VM viewer is their NX
client. The client's ``qvd.client.nxagent.extra_args`` can never turn a channel on
(``media``, ``slave``, ``cups``, ``smb`` are protected options).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "CHANNEL_OPTIONS",
    "OPUS_CODEC",
    "ChannelPlan",
    "media_port",
    "plan_channels",
    "printing_port",
    "slave_port",
]

OPUS_CODEC = "opus"  # qvd.client.audio.codec: the only value that turns Opus on
CHANNEL_OPTIONS = frozenset({"media", "slave", "cups", "smb", "http", "font"})
_TRUE = frozenset({"1", "true", "yes", "on"})


def printing_port(display: int) -> int:
    """Where nxagent listens, inside the VM, for the client's CUPS (2100 for :100)."""
    return 2000 + display


def media_port(display: int) -> int:
    """Where nxagent listens, inside the VM, for the client's PulseAudio (7100)."""
    return 7000 + display


def slave_port(display: int) -> int:
    """Where nxagent listens, inside the VM, for VM→client slave connections (11100)."""
    return 11000 + display


def _on(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """The side channels of one session (from one ``x_start``)."""

    audio: bool = False
    printing: bool = False
    slave: bool = False
    opus: bool = False  # the project's client asked for Opus on the media channel
    usb: bool = False  # the client asked for USB (needs the slave channel)

    def agent_options(self, display: int) -> list[str]:
        """The nxagent options that open these channels."""
        options = []
        if self.audio:
            options.append("media=1")
        if self.slave:
            options.append("slave=1")
        if self.printing:
            options.append(f"cups={printing_port(display)}")
        return options


def plan_channels(params: Mapping[str, str], setting: Callable[[str], str]) -> ChannelPlan:
    """The plan for ``x_start(params)``; ``setting`` reads the VMA's own configuration.
    A property the L7R passed (OSF/DI/user/VM) overrides the VMA's file for the three
    ``vma.*.enable`` switches."""
    if params.get("qvd.client.transport") == "vnc":
        return ChannelPlan()

    def allowed(key: str) -> bool:
        return _on(params[key] if key in params else setting(key))

    slave = allowed("vma.slave.enable")
    return ChannelPlan(
        audio=allowed("vma.audio.enable"),
        printing=allowed("vma.printing.enable") and _on(params.get("qvd.client.printing.enabled")),
        slave=slave,
        opus=_on(params.get("qvd.client.audio.compression.enable"))
        and params.get("qvd.client.audio.codec") == OPUS_CODEC,
        usb=slave and _on(params.get("qvd.client.usb.enabled")),
    )
