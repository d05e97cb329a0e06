"""Stage 1 of a build, the operating system: ``bootstrap`` (debootstrap from apt's
mirror), ``packages`` (apt-get inside the new root), ``configure`` and ``cleanup``.

What this module does decides what the cached OS stage holds, so its source is part
of the stage's hash (``recipe.base_hash``): a change here rebuilds the stage.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from qvd.di.commands import mounted, run_tool
from qvd.di.mirror import find_mirror
from qvd.di.progress import AptMeter, DebootstrapMeter, StepPlan
from qvd.di.recipe import Recipe

__all__ = ["bootstrap", "chroot", "cleanup", "configure", "install_packages"]


def chroot(root: Path, *args: str) -> list[str]:
    return ["chroot", str(root), *args]


@contextlib.contextmanager
def _no_services(root: Path) -> Iterator[None]:
    """Forbid maintainer scripts to start daemons inside the new root."""
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n", encoding="utf-8")
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


def bootstrap(recipe: Recipe, root: Path, plan: StepPlan, log: TextIO, expected: int) -> None:
    mirror = find_mirror(recipe.suite)
    plan.report("bootstrap", 0.0, f"debootstrap {recipe.suite} from {mirror}")
    meter = DebootstrapMeter(expected)

    def seen(line: str) -> None:
        fraction = meter.feed(line)
        if fraction is not None:
            plan.report("bootstrap", fraction, line[3:].strip())

    run_tool(
        [
            "debootstrap",
            f"--variant={recipe.variant}",
            f"--include={','.join(recipe.packages)}",
            recipe.suite,
            str(root),
            mirror,
        ],
        step="bootstrap",
        log=log,
        on_line=seen,
    )


def install_packages(recipe: Recipe, root: Path, plan: StepPlan, log: TextIO) -> None:
    if not recipe.extra_packages:
        plan.report("packages", 1.0, "no extra packages")
        return
    meter = AptMeter()

    def seen(line: str) -> None:
        fraction = meter.feed(line)
        if fraction is not None:
            plan.report("packages", fraction, line.strip()[:70])

    with _no_services(root), mounted("proc", root / "proc", "proc", step="packages"):
        plan.report("packages", 0.0, "apt-get update")
        run_tool(chroot(root, "apt-get", "update"), step="packages", log=log)
        run_tool(
            chroot(
                root,
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "-o",
                "Dpkg::Use-Pty=0",
                *recipe.extra_packages,
            ),
            step="packages",
            log=log,
            on_line=seen,
        )


def configure(recipe: Recipe, root: Path, plan: StepPlan) -> None:
    plan.report("configure", 0.0, "hostname, hosts, resolv.conf")
    (root / "etc/hostname").write_text("qvd\n", encoding="utf-8")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n", encoding="utf-8")
    # Containers have no default route; an inherited resolver address means nothing there.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    resolv.write_text("", encoding="utf-8")
    plan.report("configure", 1.0, "configured")


def cleanup(recipe: Recipe, root: Path, plan: StepPlan, log: TextIO) -> None:
    plan.report("cleanup", 0.0, "apt-get clean")
    run_tool(chroot(root, "apt-get", "clean"), step="cleanup", log=log)
    for index, rel in enumerate(recipe.remove):
        target = root / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            target.mkdir(mode=0o755)
        elif target.exists() or target.is_symlink():
            target.unlink()
        plan.report("cleanup", (index + 1) / max(len(recipe.remove), 1), f"removed /{rel}")
