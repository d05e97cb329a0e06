"""Running the external tools of a build: output goes to the build log and to a meter.

Every tool runs with a clean environment (no pyenv, no proxies we did not choose) and
its output is read line by line; a failure raises ``BuildError`` naming the step, the
exit status and the last lines of output.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from qvd.di.errors import BuildError

__all__ = ["CLEAN_ENV", "mounted", "mounts_under", "run_tool"]

CLEAN_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "HOME": "/root",
}


def run_tool(
    argv: Sequence[str],
    *,
    step: str,
    log: TextIO,
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run one tool to completion; ``BuildError(step, …)`` if it cannot start or fails."""
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    tail: collections.deque[str] = collections.deque(maxlen=30)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env if env is not None else CLEAN_ENV,
            text=True,
            errors="replace",
            bufsize=1,
        )
    except OSError as exc:
        raise BuildError(step, f"cannot run {argv[0]}: {exc.strerror}") from None
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            log.write(line)
            text = line.rstrip("\n")
            tail.append(text)
            if on_line is not None:
                on_line(text)
    log.flush()
    if proc.returncode != 0:
        raise BuildError(
            step, f"{Path(argv[0]).name} exited with status {proc.returncode}", "\n".join(tail)
        )


@contextlib.contextmanager
def mounted(source: str, target: Path, fstype: str, *, step: str) -> Iterator[None]:
    """Mount for the duration of a block; unmounts (lazily if busy) even on errors."""
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", fstype, source, str(target)],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(step, f"mount {fstype} on {target}: {result.stderr.strip()}")
    try:
        yield
    finally:
        done = subprocess.run(["umount", str(target)], capture_output=True, env=CLEAN_ENV)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, env=CLEAN_ENV)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (deepest first), from /proc/self/mounts."""
    prefix = os.path.realpath(root)
    found: list[str] = []
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        for raw in fh:
            point = raw.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)
