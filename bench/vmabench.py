"""What the container benchmarks (vma_session.py, vnc_connect.py) share: the ``test``
image (built on first use), a work directory, a private bridge and a client Xvfb, all
removed at the end (also after SIGTERM: ``benchkit.exit_on_sigterm``)."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchkit import cleanup_begins
from qvd.di import ensure_image
from qvd.di.testbed import Bridge, Xvfb

__all__ = ["ContainerLab", "container_lab"]


@dataclass(frozen=True, slots=True)
class ContainerLab:
    image: Path
    work: Path
    bridge: Bridge
    xvfb: Xvfb


@contextlib.contextmanager
def container_lab(xvfb_size: str) -> Iterator[ContainerLab]:
    image = ensure_image("test", progress=lambda p: print(p.render(), file=sys.stderr))
    work = Path(tempfile.mkdtemp(prefix="qvd-bench-"))
    bridge: Bridge | None = None
    xvfb: Xvfb | None = None
    try:
        bridge = Bridge()
        work.chmod(0o711)  # unprivileged containers traverse it to their LXC directory
        xvfb = Xvfb(size=xvfb_size)
        yield ContainerLab(image, work, bridge, xvfb)
    finally:
        cleanup_begins()
        if xvfb is not None:
            xvfb.close()
        if bridge is not None:
            bridge.close()
        shutil.rmtree(work, ignore_errors=True)
