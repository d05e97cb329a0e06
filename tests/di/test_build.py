"""A real build of the ``tiny`` recipe, looked at from outside: the image unpacked by
the system's tar, its files, the VMA on the image's own interpreter, the metadata
beside it checked against the file and against dpkg's own database in the image."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qvd.vma

pytestmark = pytest.mark.timeout(1200)  # the first run on a machine debootstraps


@pytest.fixture(scope="module")
def tiny_root(tiny_image: Path) -> Iterator[Path]:
    """The image unpacked with GNU tar (not with the builder's own unpacker)."""
    root = Path(f"/var/tmp/qvd-test-tiny-{os.getpid()}")
    root.mkdir(mode=0o755)
    try:
        subprocess.run(
            ["tar", "--zstd", "--numeric-owner", "-xpf", str(tiny_image), "-C", str(root)],
            check=True, capture_output=True,
        )  # fmt: skip
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _metadata(image: Path) -> dict[str, Any]:
    meta = image.with_name(image.name.removesuffix(".tar.zst") + ".json")
    data = json.loads(meta.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_image_is_a_debian_root_shaped_by_the_recipe(tiny_root: Path) -> None:
    os_release = (tiny_root / "etc/os-release").read_text()
    assert "VERSION_CODENAME=bookworm" in os_release
    assert (tiny_root / "usr/bin/python3").exists()
    assert (tiny_root / "etc/hostname").read_text() == "qvd\n"
    assert (tiny_root / "etc/resolv.conf").read_text() == ""  # no resolver inside VMs
    # the recipe's removals: emptied, not gone (packages expect the directories)
    for rel in ("usr/share/doc", "usr/share/man", "var/lib/apt/lists"):
        assert (tiny_root / rel).is_dir(), rel
        assert list((tiny_root / rel).iterdir()) == [], rel
    # nothing of the build left inside: no service ban, no mounted /proc content
    assert not (tiny_root / "usr/sbin/policy-rc.d").exists()
    assert list((tiny_root / "proc").iterdir()) == []
    assert (tiny_root / "etc/passwd").stat().st_uid == 0


def test_the_vma_is_in_the_image_and_runs_on_its_python(tiny_root: Path) -> None:
    installed = tiny_root / "usr/lib/qvd/python/qvd/vma"
    source = Path(qvd.vma.__file__).parent
    shipped = sorted(p.relative_to(source) for p in source.rglob("*.py"))
    assert sorted(p.relative_to(installed) for p in installed.rglob("*.py")) == shipped
    for rel in shipped:
        assert (installed / rel).read_bytes() == (source / rel).read_bytes(), rel
    assert list(installed.glob("__pycache__/*.pyc"))  # compiled by the image's python3
    launcher = tiny_root / "usr/lib/qvd/bin/qvd-vma"
    assert launcher.stat().st_mode & 0o111
    assert launcher.read_text().startswith("#!/usr/bin/python3")
    conf = (tiny_root / "etc/qvd/vma.conf").read_text()
    assert "command.x-session = true\n" in conf
    assert "vma.default.lang = C.UTF-8\n" in conf
    # the agent starts on the image's interpreter: its --help needs every import to work
    done = subprocess.run(
        ["chroot", str(tiny_root), "/usr/lib/qvd/bin/qvd-vma", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    # nxagent's NX_SLAVE_CMD: without a key every request is refused, with the reason
    slave = subprocess.run(
        ["chroot", str(tiny_root), "/usr/lib/qvd/bin/qvd-vma-slave"],
        input=b"PUT /shares/x HTTP/1.1\r\n\r\n", capture_output=True, timeout=60,
        check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip
    assert slave.stdout.startswith(b"HTTP/1.1 401 "), slave.stderr
    # the desktop user's qvd-share-to-client: its imports work on the image's python3
    share = subprocess.run(
        ["chroot", str(tiny_root), "/usr/lib/qvd/bin/qvd-share-to-client"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip
    assert share.returncode == 2, share.stderr
    assert "usage: qvd-share-to-client <folder>" in share.stderr
    assert os.readlink(tiny_root / "etc/mtab") == "../proc/self/mounts"  # for fusermount3


def test_the_metadata_describes_the_file_beside_it(tiny_image: Path, tiny_root: Path) -> None:
    info = _metadata(tiny_image)
    assert info["recipe"] == "tiny"
    assert info["file"] == tiny_image.name
    assert tiny_image.name == f"tiny-{info['recipe_hash']}.tar.zst"
    assert info["format"] == "lxc-tar-zst"
    assert info["suite"] == "bookworm"
    assert info["image_bytes"] == tiny_image.stat().st_size
    assert isinstance(info["rootfs_bytes"], int)
    assert info["rootfs_bytes"] > info["image_bytes"]  # compressed
    stamp = json.loads((tiny_root / "usr/lib/qvd/image.json").read_text())
    assert stamp == {"recipe": "tiny", "recipe_hash": info["recipe_hash"]}
    # the package list is what dpkg inside the image says
    listed = subprocess.run(
        ["dpkg-query", f"--admindir={tiny_root}/var/lib/dpkg", "-W", "-f",
         "${Package} ${Version}\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    dpkg = dict(line.split(" ", 1) for line in listed.splitlines())
    assert info["packages"] == dpkg
    assert {"python3", "base-files", "dpkg", "apt"} <= set(dpkg)
    assert not {"nxagent", "xterm"} & set(dpkg)  # minbase plus python3, nothing else


def test_qvd_di_build_from_the_command_line(tiny_image: Path, tmp_path: Path) -> None:
    """`qvd di build tiny` in a new cache that holds only the OS stage: the command runs
    the image stage for real, prints its steps and the image, and a second run reuses
    it; `qvd di info` and `qvd di recipes` show it."""
    cache = tmp_path / "cache"
    (cache / "stages").mkdir(parents=True)
    base_hash = _metadata(tiny_image)["base_hash"]
    stage = tiny_image.parent / "stages" / f"tiny-base-{base_hash}.tar.zst"
    try:
        os.link(stage, cache / "stages" / stage.name)
    except OSError:  # another file system (a tmpfs /tmp)
        shutil.copyfile(stage, cache / "stages" / stage.name)

    def qvd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("qvd")), "di", *args, "--cache", str(cache)],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip

    done = qvd("build", "tiny")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    steps = {m[1] for line in lines[:-1] if (m := re.match(r"\[\d+/\d+ (\w+)\]", line))}
    assert {"unpack", "vma", "pack"} <= steps, done.stdout
    assert "bootstrap" not in steps  # the stage came from the cache
    built = Path(lines[-1].split(" (")[0])
    assert built == cache / tiny_image.name  # same recipe, same builder: same hash
    assert built.is_file()
    assert lines[-1].endswith(f"{len(_metadata(tiny_image)['packages'])} packages)")
    assert _metadata(built)["packages"] == _metadata(tiny_image)["packages"]

    again = qvd("build", "tiny")
    assert again.returncode == 0
    assert again.stdout.splitlines() == [lines[-1]]  # from the cache, no step ran

    info = qvd("info", "tiny")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["file"] == built.name
    listing = qvd("recipes")
    tiny_line = next(line for line in listing.stdout.splitlines() if line.startswith("tiny "))
    assert "cached" in tiny_line
    assert _metadata(built)["recipe_hash"] in tiny_line
