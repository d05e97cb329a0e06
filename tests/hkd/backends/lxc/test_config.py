"""The container configuration is rendered from data: no value can add a key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qvd.hkd.backends.base import NetworkSpec, TerminalBackendError, VmSpec
from qvd.hkd.backends.lxc.config import (
    CAPS_DROPPED,
    CFS_PERIOD_US,
    UnsafeConfigValue,
    cgroup_limits,
    render_config,
    uts_name,
)
from qvd.hkd.backends.lxc.idmap import IdRange

CT = Path("/var/run/qvd/lxc/qvd-10000")


def spec(**changes: object) -> VmSpec:
    base = VmSpec(
        vm_id=10000, name="desk1", di_id=10000, image=Path("/s/images/10000-test.tar.zst"),
        memory_mib=256, vcpus=2, cpu_weight=100, vma_secret="s" * 64,
        network=NetworkSpec(bridge="qvdnet0", address="10.3.0.101", prefix=24,
                            mac="54:52:00:03:00:65", host_device="qvd10000"),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def render(vm: VmSpec, **paths: Path | None) -> str:
    values: dict[str, Path | None] = {
        "lower": CT / "lower", "upper": CT / "layer/upper", "home": CT / "home",
        "log_file": CT / "lxc.log",
    }  # fmt: skip
    values.update(paths)
    return render_config(
        vm, name="qvd-10000", ids=IdRange(1_065_536), lower=values["lower"],  # type: ignore[arg-type]
        upper=values["upper"], home=values["home"], log_file=values["log_file"],  # type: ignore[arg-type]
        pids_max=2048,
    )  # fmt: skip


def keys(text: str) -> list[str]:
    return [line.split(" = ", 1)[0] for line in text.splitlines() if not line.startswith("#")]


def test_a_container_runs_in_a_user_namespace_confined() -> None:
    text = render(spec())
    lines = text.splitlines()
    assert "lxc.idmap = u 0 1065536 65536" in lines
    assert "lxc.idmap = g 0 1065536 65536" in lines
    assert "lxc.apparmor.profile = generated" in lines
    assert "lxc.rootfs.options = userxattr" in lines  # overlay mounted by the mapped root
    assert "lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp" in lines
    assert "lxc.include = /usr/share/lxc/config/common.conf" in lines  # devices allow list
    drop = next(line for line in lines if line.startswith("lxc.cap.drop"))
    assert "sys_admin" in drop.split()
    assert set(CAPS_DROPPED) <= set(drop.split()[2:])
    assert not any("unconfined" in line or "cap.keep" in line for line in lines)
    assert any(line.startswith("lxc.mount.entry = tmpfs dev/shm tmpfs") for line in lines)
    assert f"lxc.rootfs.path = overlay:{CT}/lower:{CT}/layer/upper" in lines
    assert f"lxc.mount.entry = {CT}/home home none bind,create=dir,idmap=container 0 0" in lines


@pytest.mark.parametrize(
    "evil", ["x\nlxc.hook.pre-start = /bin/sh -c 'touch /owned'", "x\rlxc.a = b", "x\x00y",
             "x\x1b[31m", "x\u2028lxc.a = b", "x\x85y"],
)  # fmt: skip
def test_a_vm_name_with_a_control_character_is_refused(evil: str) -> None:
    with pytest.raises(UnsafeConfigValue, match=r"VM name .* contains a control character"):
        render(spec(name=evil))


@pytest.mark.parametrize(
    ("name", "uts"),
    [("desk-1", "desk-1"), ("a" * 63, "a" * 63), ("a" * 64, "qvd-10000"), ("my desk", "qvd-10000"),
     ("-x", "qvd-10000"), ("desk.example", "qvd-10000"), ("", "qvd-10000"), ("é", "qvd-10000")],
)  # fmt: skip
def test_the_host_name_is_the_vm_name_only_when_valid(name: str, uts: str) -> None:
    assert uts_name(name, "qvd-10000") == uts
    assert f"lxc.uts.name = {uts}" in render(spec(name=name)).splitlines()


@pytest.mark.parametrize(
    ("field", "value"),
    [("bridge", "br0\nlxc.hook.mount = /x"), ("host_device", "qvd 1"), ("mac", "54:52\n"),
     ("address", "10.0.0.1\n")],
)  # fmt: skip
def test_network_values_are_single_words(field: str, value: str) -> None:
    vm = spec()
    net = dataclasses.replace(vm.network, **{field: value})  # type: ignore[arg-type]
    with pytest.raises(UnsafeConfigValue):
        render(dataclasses.replace(vm, network=net))


@pytest.mark.parametrize("path", [Path("/a b/lower"), Path("/a:b/lower"), Path("/a\nlxc.x = y")])
def test_paths_with_a_space_colon_or_newline_are_refused(path: Path) -> None:
    for key in ("lower", "upper", "home", "log_file"):
        with pytest.raises(UnsafeConfigValue):
            render(spec(), **{key: path})


def test_every_line_is_one_known_key_and_no_hook() -> None:
    text = render(spec(name="desk1"))
    assert all(k.startswith("lxc.") for k in keys(text))
    assert not any("hook" in k for k in keys(text))
    assert text.count("\n") == len(text.splitlines())


@pytest.mark.parametrize(
    ("weight", "vcpus", "shares", "quota"),
    [(100, 2, 1024, 200_000), (1, 1, 10, 100_000), (10000, 4, 102_400, 400_000),
     (50, 3, 512, 300_000)],
)  # fmt: skip
def test_neutral_figures_map_to_cgroup_v1_knobs(
    weight: int, vcpus: int, shares: int, quota: int
) -> None:
    vm = spec(memory_mib=300, vcpus=vcpus, cpu_weight=weight)
    assert cgroup_limits(vm, pids_max=77) == {
        ("memory", "memory.limit_in_bytes"): 300 << 20,
        ("cpu", "cpu.shares"): shares,
        ("cpu", "cpu.cfs_period_us"): CFS_PERIOD_US,
        ("cpu", "cpu.cfs_quota_us"): quota,
        ("pids", "pids.max"): 77,
    }
    lines = render(vm).splitlines()
    assert f"lxc.cgroup.memory.limit_in_bytes = {300 << 20}" in lines
    assert f"lxc.cgroup.cpu.shares = {shares}" in lines
    assert f"lxc.cgroup.cpu.cfs_quota_us = {quota}" in lines
    assert "lxc.cgroup.pids.max = 2048" in lines


@pytest.mark.parametrize(
    "changes", [{"memory_mib": 0}, {"vcpus": 0}, {"cpu_weight": 0}, {"cpu_weight": 10001}]
)
def test_figures_out_of_range_are_refused(changes: dict[str, int]) -> None:
    with pytest.raises(TerminalBackendError, match="must be positive"):
        render(spec(**changes))


def test_a_gateway_is_a_route_only_when_given() -> None:
    assert not any("gateway" in k for k in keys(render(spec())))
    vm = spec()
    routed = dataclasses.replace(vm, network=dataclasses.replace(vm.network, gateway="10.3.0.1"))
    assert "lxc.net.0.ipv4.gateway = 10.3.0.1" in render(routed).splitlines()


@pytest.mark.parametrize("gateway", ["10.3.0.1\nlxc.hook.mount = /x", "auto", "10.3.0", ""])
def test_a_gateway_is_an_ipv4_address(gateway: str) -> None:
    vm = spec()
    bad = dataclasses.replace(vm, network=dataclasses.replace(vm.network, gateway=gateway))
    with pytest.raises(UnsafeConfigValue):
        render(bad)


def test_fuse_binds_dev_fuse_and_keeps_sys_admin_only_when_asked() -> None:
    plain = render(spec()).splitlines()
    assert not any("/dev/fuse" in line for line in plain)
    vm = spec()
    text = render_config(
        vm, name="qvd-10000", ids=IdRange(1_065_536), lower=CT / "lower",
        upper=CT / "layer/upper", home=None, log_file=CT / "lxc.log", pids_max=2048, fuse=True,
    )  # fmt: skip
    lines = text.splitlines()
    assert "lxc.mount.entry = /dev/fuse dev/fuse none bind,create=file,optional 0 0" in lines
    drop = next(line for line in lines if line.startswith("lxc.cap.drop")).split()[2:]
    assert "sys_admin" not in drop
    assert set(CAPS_DROPPED) - {"sys_admin"} <= set(drop)
