"""Where an LXC node keeps things (DESIGN §3), all under configured roots.

    images/<di file>                       DI files (imported by the API or `qvd up`)
    basefs/<di_id>-<name>/                 unpacked once per DI, shared read-only
    basefs/lock.<di_id>                    lock held while a DI is unpacked
    overlayfs/<di_id>-<vm_id>-overlayfs/   per-VM layer: ``upper/`` (fresh at each start
                                           unless vm.overlay.persistent) and LXC's
                                           ``olwork/`` beside it, one file
                                           system: the loop-mounted image
    overlayfs/.images/<layer>.ext4         that layer's sparse image
                                           (``vm.overlay.size`` MiB)
    homefs/<key>/                          persistent homes (per VM or per login)
    <path.run.lxc>/qvd-<vm_id>/config      the generated container configuration
    <path.run.lxc>/qvd-<vm_id>/{lower,layer,home}/
                                           empty mount points (see below)

basefs, overlayfs, homefs and images are 0700 root: no local account of the node can
reach the setuid files of a base or an upper. The container's mapped root cannot
either, so each start happens in a private mount namespace (``mountns``) that mounts
an idmapped read-only view of the base on ``lower`` and binds the VM's layer on
``layer`` and its home on ``home``; the container directory is 0750 root:<mapped root
group>, the only way in. The union mount itself is made by LXC inside the container's
own mount namespace (``lxc.rootfs.path = overlay:…``), so nothing is mounted on the host
and nothing can be left mounted when the HKD dies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qvd.hkd.backends.base import TerminalBackendError
from qvd.imagefile import IMAGE_SUFFIXES

__all__ = ["HOME_KEY_MAX", "BadHomeKey", "Layout", "check_home_key", "container_name", "vm_id_of"]

_PREFIX = "qvd-"
HOME_KEY_MAX = 128


class BadHomeKey(TerminalBackendError):
    """A home directory name (a VM id or a user's login) that is not a plain file name."""


def check_home_key(key: str) -> str:
    """``key`` if it is one plain, bounded file name; else :class:`BadHomeKey`."""
    shown = repr(key[:40])
    if not key or key in (".", ".."):
        raise BadHomeKey(f"home directory name {shown} is empty or a dot name")
    if len(key) > HOME_KEY_MAX:
        raise BadHomeKey(f"home directory name {shown}… is longer than {HOME_KEY_MAX}")
    if "/" in key:
        raise BadHomeKey(f"home directory name {shown} contains a slash")
    if key.startswith(("-", ".")):
        raise BadHomeKey(f"home directory name {shown} starts with '-' or '.'")
    if any(ord(c) < 32 or ord(c) == 127 or c.isspace() for c in key):
        raise BadHomeKey(f"home directory name {shown} contains a control or space character")
    return key


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
        """The home directory of ``key``, checked to stay directly under homefs."""
        path = self.homefs / check_home_key(key)
        resolved = path.resolve()
        if resolved.parent != self.homefs.resolve():
            raise BadHomeKey(f"home directory {path} resolves outside {self.homefs}")
        return path

    def container_dir(self, vm_id: int) -> Path:
        return self.lxcpath / container_name(vm_id)

    def lower_mount(self, vm_id: int) -> Path:
        """Where the idmapped read-only view of the base is mounted for this VM."""
        return self.container_dir(vm_id) / "lower"

    def layer_mount(self, vm_id: int) -> Path:
        """Where the VM's overlay layer directory is bound."""
        return self.container_dir(vm_id) / "layer"

    def home_mount(self, vm_id: int) -> Path:
        """Where the VM's persistent home is bound."""
        return self.container_dir(vm_id) / "home"

    def layers_of(self, vm_id: int) -> list[Path]:
        """Overlay layers of this VM, whatever DI they were made for."""
        if not self.overlayfs.is_dir():
            return []
        return sorted(self.overlayfs.glob(f"*-{vm_id}-overlayfs"))
