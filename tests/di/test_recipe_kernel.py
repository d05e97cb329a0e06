"""A recipe's kernel (issue #16, USB/IP): the cloud flavour by default, the generic one
for guests that attach USB devices; the test-usb recipe is the test image on it."""

from __future__ import annotations

import dataclasses

import pytest

from qvd.di.recipe import DEFAULT_KERNEL, RecipeError, base_hash, load_recipe, parse_recipe
from qvd.di.vmstage import KEEP_MODULES, modules_to_keep, vm_stage_key

RECIPE = """
name = "k"
description = "d"
suite = "bookworm"
variant = "minbase"
packages = ["python3"]
"""


def test_the_default_kernel_leaves_hashes_as_they_were() -> None:
    plain = parse_recipe(RECIPE)
    assert plain.kernel == DEFAULT_KERNEL == "linux-image-cloud-amd64"
    assert "kernel" not in plain.as_data()
    generic = parse_recipe(RECIPE + 'kernel = "linux-image-amd64"\n')
    assert generic.as_data()["kernel"] == "linux-image-amd64"
    assert base_hash(generic) == base_hash(plain)  # the OS stage is shared
    assert vm_stage_key(generic) != vm_stage_key(plain)  # the kernel is the VM stage's


@pytest.mark.parametrize("kernel", ['"linux-image-rt-amd64"', '"../x"', "1", '""'])
def test_only_known_kernels(kernel: str) -> None:
    with pytest.raises(RecipeError, match="'kernel' must be one of"):
        parse_recipe(RECIPE + f"kernel = {kernel}\n")


def test_test_usb_is_the_test_image_on_the_generic_kernel() -> None:
    test, usb = load_recipe("test"), load_recipe("test-usb")
    assert usb.kernel == "linux-image-amd64"
    assert dataclasses.replace(usb, name="test", description=test.description,
                               kernel=test.kernel) == test  # fmt: skip
    assert base_hash(usb) == base_hash(test)


def test_usbip_modules_and_their_dependencies_are_kept() -> None:
    dep = "\n".join([
        "kernel/drivers/usb/usbip/vhci-hcd.ko: kernel/drivers/usb/usbip/usbip-core.ko "
        "kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko",
        "kernel/drivers/usb/usbip/usbip-core.ko: kernel/drivers/usb/core/usbcore.ko "
        "kernel/drivers/usb/common/usb-common.ko",
        "kernel/drivers/usb/usbip/usbip-host.ko: kernel/drivers/usb/usbip/usbip-core.ko",
        "kernel/drivers/usb/core/usbcore.ko: kernel/drivers/usb/common/usb-common.ko",
        "kernel/drivers/usb/common/usb-common.ko:",
        "kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/usb/core/usbcore.ko",
    ])  # fmt: skip
    kept = modules_to_keep(dep, KEEP_MODULES)
    assert kept == {
        "kernel/drivers/usb/usbip/vhci-hcd.ko",
        "kernel/drivers/usb/usbip/usbip-core.ko",
        "kernel/drivers/usb/core/usbcore.ko",
        "kernel/drivers/usb/common/usb-common.ko",
    }
