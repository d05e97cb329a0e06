"""Which NX side channels a session opens: the VMA's switches, the properties that
override them, what the client asks for, and the client's extra args that must never
open one."""

from __future__ import annotations

import pytest

from qvd.vma.channels import ChannelPlan, plan_channels
from qvd.vma.nxoptions import agent_options

OFF = {"vma.audio.enable": "0", "vma.printing.enable": "0", "vma.slave.enable": "0"}
ON = {"vma.audio.enable": "1", "vma.printing.enable": "1", "vma.slave.enable": "1"}


@pytest.mark.parametrize(
    ("file", "params", "plan"),
    [
        (OFF, {}, ChannelPlan()),
        (ON, {}, ChannelPlan(audio=True, slave=True)),  # printing also needs the client
        (
            ON,
            {"qvd.client.printing.enabled": "1", "qvd.client.usb.enabled": "1"},
            ChannelPlan(audio=True, printing=True, slave=True, usb=True),
        ),
        # a property (OSF, DI, user, VM) overrides the VMA's file, both ways
        (OFF, {"vma.printing.enable": "1", "qvd.client.printing.enabled": "1"},
         ChannelPlan(printing=True)),
        (ON, {"vma.audio.enable": "0", "vma.slave.enable": "false"}, ChannelPlan()),
        # USB rides on the slave channel
        (OFF, {"qvd.client.usb.enabled": "1"}, ChannelPlan()),
        # an original client asks for compression alone: it keeps the PulseAudio tunnel
        (ON, {"qvd.client.audio.compression.enable": "1"},
         ChannelPlan(audio=True, slave=True, opus=False)),
        # the project's client names the codec too: Opus on the media channel
        (ON, {"qvd.client.audio.compression.enable": "1", "qvd.client.audio.codec": "opus"},
         ChannelPlan(audio=True, slave=True, opus=True)),
        (ON, {"qvd.client.audio.compression.enable": "0", "qvd.client.audio.codec": "opus"},
         ChannelPlan(audio=True, slave=True, opus=False)),
        (ON, {"qvd.client.audio.compression.enable": "1", "qvd.client.audio.codec": "OPUS "},
         ChannelPlan(audio=True, slave=True, opus=False)),
        # a browser session: the in-VM viewer is the NX client, no channel is opened
        (ON, {"qvd.client.transport": "vnc", "qvd.client.printing.enabled": "1"},
         ChannelPlan()),
    ],
)  # fmt: skip
def test_the_plan_follows_the_switches_and_the_client(
    file: dict[str, str], params: dict[str, str], plan: ChannelPlan
) -> None:
    assert plan_channels(params, file.__getitem__) == plan


def test_the_plan_becomes_nxagent_options() -> None:
    plan = ChannelPlan(audio=True, printing=True, slave=True)
    assert plan.agent_options(100) == ["media=1", "slave=1", "cups=2100"]
    assert ChannelPlan().agent_options(100) == []
    line = agent_options({}, display=100, cookie="ab" * 16, accept="", channels=["media=1"])
    assert ",media=1,listen=4100," in line


def test_the_clients_extra_args_never_open_a_channel() -> None:
    extra = "media=1,slave=1,cups=631,smb=445,http=80,font=1,dpi=96"
    line = agent_options(
        {"qvd.client.nxagent.extra_args": extra}, display=100, cookie="ab" * 16, accept=""
    )
    assert "dpi=96" in line
    for option in ("media=", "slave=", "cups=", "smb=", "http=", "font="):
        assert option not in line
