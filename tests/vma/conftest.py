"""Fixtures for the VMA tests: the cached ``test`` image, a private bridge, containers,
client displays. Everything created here is removed by finalizers, also on failure."""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qvd.di import ensure_image
from qvd.di.testbed import Bridge, NetnsPeer, NxProxy, Xvfb
from qvd.hkd.backends.lxc.testbed import Container
from qvd.vma.client import VmaClient
from tests.vma.helpers import StartContainer, wait_ping

REQUIRED_TOOLS = ("lxc-start", "lxc-stop", "lxc-info", "debootstrap", "zstd", "nxproxy", "Xvfb")


def _require_host() -> None:
    if os.geteuid() != 0:
        pytest.fail("the container tests need root")
    missing = [
        tool for tool in REQUIRED_TOOLS if shutil.which(tool, path="/usr/sbin:/usr/bin") is None
    ]
    if missing:
        pytest.fail(f"missing host tools {missing}: run scripts/deps-di.sh")


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    """A per-run directory outside the checkout: the containers' storage root (unpacked
    bases, bounded uppers) and LXC path, as on a node."""
    path = Path(f"/var/tmp/qvd-tests-{os.getpid()}-{secrets.token_hex(3)}")
    path.mkdir(parents=True)
    path.chmod(0o711)  # unprivileged containers traverse it to their LXC directory
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def test_image() -> Path:
    """The ``test`` image file (built once per machine, then cached)."""
    _require_host()
    return ensure_image("test", progress=lambda p: print(p.render(), flush=True))


@pytest.fixture(scope="session")
def bridge() -> Iterator[Bridge]:
    _require_host()
    net = Bridge()
    yield net
    net.close()


@pytest.fixture
def start_container(test_image: Path, bridge: Bridge, scratch: Path) -> Iterator[StartContainer]:
    """Factory: a started container (of the test image unless ``image`` is given), run
    by the LXC backend as a node runs it, and a VMA client that already had its ping
    answered."""
    made: list[Container] = []

    def start(image: Path | None = None) -> tuple[Container, VmaClient]:
        secret = secrets.token_hex(24)
        container = Container(
            image=image or test_image,
            workdir=scratch,
            bridge=bridge,
            host=next(_hosts),
            secret=secret,
        )
        made.append(container)
        container.prepare()
        container.start()
        client = VmaClient(container.address, secret=secret, timeout=5.0)
        wait_ping(client)
        return container, client

    yield start
    for container in made:
        if container.state() == "RUNNING":  # shown by pytest only when the test failed
            for path in ("/var/log/qvd/vma.log", "/var/log/qvd/nxagent.log"):
                print(f"----- {container.name}:{path}\n{container.log_text(path)[-6000:]}")
        container.close()


_hosts = itertools.count(10)


@pytest.fixture
def xvfb() -> Iterator[Xvfb]:
    display = Xvfb()
    yield display
    display.close()


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[Callable[..., NxProxy]]:
    """Factory of nxproxy clients, all closed at the end."""
    made: list[NxProxy] = []

    def make(**kwargs: object) -> NxProxy:
        root = tmp_path / f"nx{len(made)}"
        proxy = NxProxy(root=root, **kwargs)  # type: ignore[arg-type]
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


@pytest.fixture
def bridge_peer(bridge: Bridge) -> Iterator[NetnsPeer]:
    """Another "VM" on the bridge (a network namespace at .200)."""
    peer = NetnsPeer(bridge, 200)
    yield peer
    peer.close()
