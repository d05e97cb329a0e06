"""Provisioning the session's user from the ``x_start`` properties.

Properties (QVD): ``qvd.vm.user.name`` (default ``vma.user.default.name``=qvd),
``.uid``, ``.gid``, ``.group`` (default: the user name), ``.home`` (default
``<vma.user.home.path>/<name>``), ``.groups`` (comma-separated; default
``vma.user.default.groups``=qvduser). ``user_spec`` validates them and
``provision_commands`` lists the groupadd/useradd runs: both pure. ``provision``
runs them, unless a ``vma.on_provisioning.add_user`` hook replaces the built-in step.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from qvd.vma.config import VmaConfig
from qvd.vma.homefiles import ensure_private_dir, open_home

__all__ = ["ProvisionError", "UserSpec", "provision", "provision_commands", "user_spec"]

_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,30}\$?$")
_HOME = re.compile(r"^/[A-Za-z0-9_./-]*$")


class ProvisionError(Exception):
    """The properties are invalid, or a provisioning command failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserSpec:
    name: str
    uid: int | None
    gid: int | None
    group: str
    home: str
    groups: tuple[str, ...]
    shell: str


def _checked_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ProvisionError(f"invalid {what} {value!r}")
    return value


def _checked_id(value: str, what: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 2**31:
        raise ProvisionError(f"invalid {what} {value!r}")
    return int(value)


def user_spec(params: Mapping[str, str], config: VmaConfig) -> UserSpec:
    """The user to provision, from the properties and the defaults."""
    name = _checked_name(
        params.get("qvd.vm.user.name") or config.get("vma.user.default.name"), "user name"
    )
    group = _checked_name(params.get("qvd.vm.user.group") or name, "group name")
    home = params.get("qvd.vm.user.home") or os.path.join(config.get("vma.user.home.path"), name)
    if not _HOME.match(home) or ".." in home.split("/"):
        raise ProvisionError(f"invalid home {home!r}")
    raw_groups = params.get("qvd.vm.user.groups", config.get("vma.user.default.groups"))
    groups = tuple(
        _checked_name(g.strip(), "group name") for g in raw_groups.split(",") if g.strip()
    )
    return UserSpec(
        name=name,
        uid=_checked_id(params.get("qvd.vm.user.uid", ""), "uid"),
        gid=_checked_id(params.get("qvd.vm.user.gid", ""), "gid"),
        group=group,
        home=home,
        groups=groups,
        shell=config.get("vma.user.shell"),
    )


def provision_commands(
    spec: UserSpec, *, user_exists: bool, existing_groups: set[str], home_exists: bool
) -> list[list[str]]:
    """The commands that create what is missing (empty if the user exists)."""
    if user_exists:
        return []
    commands: list[list[str]] = []
    if spec.group not in existing_groups:
        gid = [] if spec.gid is None else ["-g", str(spec.gid)]
        commands.append(["groupadd", *gid, "--", spec.group])
    commands.extend(
        ["groupadd", "--", extra]
        for extra in spec.groups
        if extra not in existing_groups and extra != spec.group
    )
    argv = ["useradd", "-d", spec.home, "-g", spec.group, "-s", spec.shell]
    argv += ["-M"] if home_exists else ["-m"]
    if spec.groups:
        argv += ["-G", ",".join(spec.groups)]
    if spec.uid is not None:
        argv += ["-u", str(spec.uid)]
    argv += ["--", spec.name]
    commands.append(argv)
    return commands


def _existing_groups() -> set[str]:
    return {g.gr_name for g in grp.getgrall()}


def provision(spec: UserSpec, run_hook: Callable[[str], bool | None]) -> pwd.struct_passwd:
    """Create the user (and groups, and home) if missing; returns its passwd entry.

    ``run_hook(name)`` runs ``vma.on_provisioning.<name>``: it returns None when no
    such hook is configured, else whether it succeeded.
    """
    home_exists = os.path.isdir(spec.home)
    if not home_exists and run_hook("mount_home") is False:
        raise ProvisionError("mount_home hook failed")
    try:
        entry = pwd.getpwnam(spec.name)
    except KeyError:
        hooked = run_hook("add_user")
        if hooked is False:
            raise ProvisionError("add_user hook failed") from None
        if hooked is None:
            for argv in provision_commands(
                spec,
                user_exists=False,
                existing_groups=_existing_groups(),
                home_exists=os.path.isdir(spec.home),
            ):
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise ProvisionError(
                        f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}"
                    ) from None
        if run_hook("after_add_user") is False:
            raise ProvisionError("after_add_user hook failed") from None
        try:
            entry = pwd.getpwnam(spec.name)
        except KeyError:
            raise ProvisionError(f"user {spec.name!r} still missing after provisioning") from None
    if not os.path.lexists(entry.pw_dir):
        parent, name = os.path.split(entry.pw_dir.rstrip("/"))
        os.makedirs(parent, mode=0o755, exist_ok=True)
        with open_home(parent) as parent_fd:
            ensure_private_dir(parent_fd, name, entry.pw_uid, entry.pw_gid, mode=0o750)
    return entry
