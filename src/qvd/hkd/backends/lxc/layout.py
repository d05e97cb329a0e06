"""Where an LXC node keeps things (DESIGN §3), all under configured roots.

    images/<di file>                       DI files (imported by the API or `qvd up`)
    basefs/<di_id>-<name>/                 unpacked once per DI, shared read-only
    basefs/lock.<di_id>                    lock held while a DI is unpacked
    overlayfs/<di_id>-<vm_id>-overlayfs/   per-VM layer: ``upper/`` (fresh at each start
                                           unless vm.overlay.persistent) and LXC's
                                           ``olwork/`` beside it
    homefs/<key>/                          persistent homes (per VM or per login)
    <path.run.lxc>/qvd-<vm_id>/config      the generated container configuration

The union mount itself is made by LXC inside the container's own mount namespace
(``lxc.rootfs.path = overlay:…``), so nothing is mounted on the host and nothing can
be left mounted when the HKD dies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qvd.imagefile import IMAGE_SUFFIXES

__all__ = ["Layout", "container_name", "vm_id_of"]

_PREFIX = "qvd-"


def container_name(vm_id: int) -> str:
    return f"{_PREFIX}{vm_id}"


def vm_id_of(name: str) -> int | None:
    """The VM id of a container name of ours, else None."""
    if name.startswith(_PREFIX) and name[len(_PREFIX) :].isdigit():
        return int(name[len(_PREFIX) :])
    return None


def _image_stem(image: Path) -> str:
    name = image.name
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True, slots=True)
class Layout:
    images: Path
    basefs: Path
    overlayfs: Path
    homefs: Path
    lxcpath: Path

    def base(self, di_id: int, image: Path) -> Path:
        return self.basefs / f"{di_id}-{_image_stem(image)}"

    def base_lock(self, di_id: int) -> Path:
        return self.basefs / f"lock.{di_id}"

    def layer(self, di_id: int, vm_id: int) -> Path:
        return self.overlayfs / f"{di_id}-{vm_id}-overlayfs"

    def upper(self, di_id: int, vm_id: int) -> Path:
        return self.layer(di_id, vm_id) / "upper"

    def home(self, key: str) -> Path:
        return self.homefs / key

    def container_dir(self, vm_id: int) -> Path:
        return self.lxcpath / container_name(vm_id)

    def layers_of(self, vm_id: int) -> list[Path]:
        """Overlay layers of this VM, whatever DI they were made for."""
        if not self.overlayfs.is_dir():
            return []
        return sorted(self.overlayfs.glob(f"*-{vm_id}-overlayfs"))
