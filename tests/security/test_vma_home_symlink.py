"""Attack: a desktop user plants links in their home so that the VMA (root in the
desktop) writes or chowns a system file at the next session start.

Before the fix the VMA wrote ``~/.Xauthority`` through ``~/..Xauthority.tmp`` (opened
following links, then fchown'ed to the user) and chowned ``~/.nx`` following links:
one login made the user the owner of ``/etc/passwd``. Reproduced in a real container
of the test image with its real VMA: the targets stay unchanged and root-owned, and the
session still starts (the links are replaced by the user's own files).
"""

from __future__ import annotations

import pytest

from qvd.hkd.backends.lxc.testbed import Container
from tests.vma.conftest import (  # noqa: F401 (fixtures used by name)
    bridge,
    scratch,
    start_container,
    test_image,
)
from tests.vma.helpers import StartContainer, wait_state

pytestmark = pytest.mark.timeout(300)

USER = {"qvd.vm.user.name": "alice", "qvd.vm.user.uid": "23456", "qvd.client.link": "lan"}
VICTIM_FILE = "/etc/qvd-victim-file"
VICTIM_DIR = "/etc/qvd-victim-dir"
PLANT = (
    "set -e; cd /home/alice; rm -rf .Xauthority ..Xauthority.tmp .nx; "
    f"ln -s {VICTIM_FILE} ..Xauthority.tmp; ln -s {VICTIM_FILE} .Xauthority; "
    f"ln -s {VICTIM_DIR} .nx; ls -la"
)


def _stat(container: Container, path: str, follow: bool = True) -> str:
    flags = ["-L"] if follow else []
    return container.attach("stat", "-c", "%U:%G:%a:%F", *flags, path).stdout.strip()


def test_links_in_the_home_never_lead_the_vma_outside(
    start_container: StartContainer,  # noqa: F811
) -> None:
    container, client = start_container()
    # a first session provisions alice and her home
    client.x_start(USER)
    assert wait_state(client, "listening") == "listening"
    client.x_stop()
    assert wait_state(client, "stopped") == "stopped"

    # root-owned targets, then alice (as herself) plants her links
    setup = container.attach(
        "sh",
        "-c",
        f"printf 'root:x:0:0\\n' > {VICTIM_FILE}; chmod 644 {VICTIM_FILE}; "
        f"cp -p {VICTIM_FILE} /root/victim.orig; "
        f"mkdir -m 755 {VICTIM_DIR}",
    )
    assert setup.returncode == 0, setup.stderr
    planted = container.attach(
        "setpriv", "--reuid=23456", "--regid=23456", "--clear-groups", "sh", "-c", PLANT
    )
    assert planted.returncode == 0, planted.stderr
    assert "-> " + VICTIM_FILE in planted.stdout

    # the next session start: the VMA writes the cookie file and makes ~/.nx
    client.x_start(USER)
    assert wait_state(client, "listening") == "listening"

    same = container.attach("cmp", VICTIM_FILE, "/root/victim.orig")
    assert same.returncode == 0, "the VMA wrote through ~/..Xauthority.tmp into a system file"
    assert _stat(container, VICTIM_FILE) == "root:root:644:regular file"
    assert _stat(container, VICTIM_DIR) == "root:root:755:directory"
    # alice got her own files in place of the links
    assert _stat(container, "/home/alice/.Xauthority", follow=False) == (
        "alice:alice:600:regular file"
    )
    assert _stat(container, "/home/alice/.nx", follow=False) == "alice:alice:700:directory"
    client.x_stop()
    assert wait_state(client, "stopped") == "stopped"
