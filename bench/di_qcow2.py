"""KVM image benchmark: ``qvd di build RECIPE --format qcow2`` and one boot of the result.

The build runs in a scratch cache that holds the machine's cached stages of the recipe
(linked, not rebuilt): the OS stage always, the VM stage with ``--quick`` (so only the
image stage runs: VMA, systemd setup, mkfs.ext4 -d, qemu-img convert). Without
``--quick`` the VM stage (kernel, systemd, initrd) is built too and timed apart. Then
QEMU boots the image under TCG (2 vCPUs, 512 MiB, kernel and initrd from the image,
user-mode network with ``restrict=on``) until ``qvd-vma.service`` says it listens on the
serial console. Run as root, under the machine's heavy lock:

    flock /tmp/qvd-heavy.lock .venv/bin/python bench/di_qcow2.py [--quick] [--recipe R]

The last line printed is ``recipe=… vm_stage_s=… build_s=… image_mib=… virtual_mib=…
boot_to_vma_s=…``: ``build_s`` is the whole build in the scratch cache (with the VM
stage when it is built; ``vm_stage_s`` is its part, ``cached`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchkit import exit_on_sigterm, scratch_dir, stop_process
from qvd.di import build_image, load_recipe, output_format, read_image_info
from qvd.di.recipe import base_hash
from qvd.di.vmstage import vm_stage_key
from qvd.hkd.backends.kvm.bootfiles import boot_files

CACHE = Path(os.environ.get("QVD_TEST_DI_CACHE", "/var/cache/qvd/di"))
BOOT_BUDGET = 300.0


def _link(source: Path, dest: Path) -> None:
    if not source.is_file():
        sys.exit(f"{source} is missing: build the recipe once (qvd di build … --format qcow2)")
    try:
        os.link(source, dest)
    except OSError:  # another file system
        shutil.copyfile(source, dest)


def _boot(image: Path, work: Path) -> float:
    """Seconds from QEMU's start to the VMA listening, as the serial console shows."""
    (work / "boot").mkdir()
    boot = boot_files(image, work / "boot")
    overlay, console = work / "overlay.qcow2", work / "console.log"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image),
                    "-F", "qcow2", str(overlay)], check=True)  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg,tb-size=128", "-machine", "pc", "-m", "512",
         "-smp", "2", "-nodefaults", "-no-user-config", "-display", "none",
         "-kernel", str(boot.kernel), "-initrd", str(boot.initrd), "-append", boot.cmdline,
         "-drive", f"file={overlay},if=virtio,format=qcow2",
         "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0",
         "-serial", f"file:{console}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while time.monotonic() - started < BOOT_BUDGET:
            if proc.poll() is not None:
                sys.exit(f"QEMU exited with status {proc.returncode}")
            if console.exists() and "listening on" in console.read_text(errors="replace"):
                return time.monotonic() - started
            time.sleep(0.1)
        sys.exit(f"the VMA did not start within {BOOT_BUDGET:.0f} s")
    finally:
        stop_process(proc, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reuse the cached VM stage")
    parser.add_argument("--recipe", default="test", help="recipe to build (default: test)")
    args = parser.parse_args()
    exit_on_sigterm()
    recipe, fmt = load_recipe(args.recipe), output_format("qcow2")
    with scratch_dir("qvd-bench-di-qcow2-") as work:
        cache = work / "cache"
        (cache / "stages").mkdir(parents=True)
        base = f"{recipe.name}-base-{base_hash(recipe)}.tar.zst"
        _link(CACHE / "stages" / base, cache / "stages" / base)
        vm_stage = "cached"
        if args.quick:
            stage = f"{recipe.name}-vm-{vm_stage_key(recipe)}.tar.zst"
            _link(CACHE / "stages" / stage, cache / "stages" / stage)
        seconds: dict[str, float] = {}

        def seen(progress: object) -> None:
            step = getattr(progress, "step", "")
            seconds.setdefault(step, time.monotonic())

        started = time.monotonic()
        image = build_image(recipe, cache, progress=seen, fmt=fmt)
        total = time.monotonic() - started
        if not args.quick:
            vm_stage = f"{seconds['vma'] - seconds['kernel']:.1f}"
        info = read_image_info(image)
        described = subprocess.run(["qemu-img", "info", "--output=json", str(image)],
                                   check=True, capture_output=True, text=True).stdout  # fmt: skip
        virtual_mib = int(json.loads(described)["virtual-size"]) >> 20
        boot = _boot(image, work)
        print(f"{image.name}: {info.image_bytes / 2**20:.1f} MiB, {len(info.packages)} packages")
        print(
            f"recipe={recipe.name} vm_stage_s={vm_stage} build_s={total:.1f} "
            f"image_mib={info.image_bytes / 2**20:.1f} virtual_mib={virtual_mib} "
            f"boot_to_vma_s={boot:.1f}"
        )


if __name__ == "__main__":
    main()
