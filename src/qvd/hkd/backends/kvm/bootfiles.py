"""The kernel, initrd and kernel command line of a KVM DI, taken out of the image for
QEMU's direct kernel boot, without mounting it on the node.

A DI's qcow2 holds one ext4 file system (label ``qvdroot``) with ``/boot/qvd/vmlinuz``,
``/boot/qvd/initrd.img`` and ``/boot/qvd/cmdline``. The file system is the image
author's, so it never meets the node's kernel: the image's header is checked first
(``qvd.imagefile.check_qcow2``: no backing file, no external data file), ``qemu-img
convert`` (opened with ``backing: null``) turns it into a sparse raw file in a private
work directory once ``qemu-img map`` shows the disk has room for the data it holds, and
e2fsprogs' ``debugfs`` (userspace, read-only, run as ``nobody`` when the daemon is root,
under ``prlimit`` bounds of memory, CPU time and output size) stats each file and dumps
it by inode. Each must be a regular file (a symbolic link, even to ``/etc/shadow``, is
refused and never followed: debugfs resolves paths inside the image only) within its
bound: kernel 64 MiB, initrd 256 MiB, command line 1 KiB of one printable line. The
kernel must be a bzImage or an ELF. (Converting the whole disk costs about 0.7 s for a
473 MiB DI, once per DI and node: see ``bench/bootfiles.py``; reading only the blocks
needed would need a qcow2 and an ext4 reader of our own, more hostile-input code.)

The command line is the image author's, and a DI may come from a tenant administrator,
who is not trusted with the node: only the words in :data:`ALLOWED_FLAGS` and
``key=value`` words whose key is in :data:`ALLOWED_KEYS`, with plain values, pass
(``init=``, ``rdinit=``, ``systemd.unit=``, module options and anything unknown are
refused), so a DI boots the QVD way: its own init, the VMA as a service.

The result is cached per DI under ``cache_dir`` (0700, files 0600), keyed by the image
file's name, inode, size and modification time, and made once under a per-key lock:
VMs of one DI starting at once wait for one extraction and share it.
:func:`prune_boot_files` removes what no image in use needs any more.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from qvd.hkd.backends.base import BackendError, TerminalBackendError
from qvd.imagefile import ImageRejected, check_qcow2_fd

__all__ = [
    "ALLOWED_FLAGS",
    "ALLOWED_KEYS",
    "BOOT_DIR",
    "BootFiles",
    "boot_files",
    "check_cmdline",
    "prune_boot_files",
]

BOOT_DIR = "/boot/qvd"
KERNEL_MAX = 64 << 20
INITRD_MAX = 256 << 20
CMDLINE_MAX = 1024
# what the header check lets qemu-img open (the backend bounds it by its own token)
_VIRTUAL_MAX = 1 << 50
_TIMEOUT = 600.0  # seconds for one tool run (converting a large image under load)
_DEBUGFS_MEMORY = 1 << 30  # bytes of address space debugfs may use
_DEBUGFS_CPU = 60  # seconds of CPU time debugfs may use for one request
_ROOM_MARGIN = 256 << 20  # bytes the extraction leaves free on the cache's disk

ALLOWED_FLAGS = frozenset({"rw", "ro", "quiet", "rootwait", "nomodeset", "noresume"})
ALLOWED_KEYS = frozenset(
    {
        "root",
        "rootfstype",
        "rootflags",
        "console",
        "loglevel",
        "panic",
        "net.ifnames",
        "biosdevname",
        "systemd.show_status",
        "systemd.log_level",
        "systemd.log_target",
        "systemd.log_color",
        "systemd.journald.forward_to_console",
        "tsc",
        "clocksource",
        "mitigations",
    }
)
_VALUE = re.compile(r"^[A-Za-z0-9_.,:/+@=-]{1,200}$")  # root=LABEL=qvdroot
_KEY = re.compile(r"^[0-9a-f]{32}$")
_STAT_HEAD = re.compile(r"^Inode:\s+(\d+)\s+Type:\s+(\S+)", re.MULTILINE)
_STAT_SIZE = re.compile(r"^User:.*\bSize:\s+(\d+)\s*$", re.MULTILINE)
_BZIMAGE_MAGIC = b"HdrS"  # at 0x202 of a bzImage's setup header
_ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True, slots=True, kw_only=True)
class BootFiles:
    kernel: Path
    initrd: Path
    cmdline: str


@dataclass(frozen=True, slots=True)
class _Wanted:
    name: str  # under BOOT_DIR, and the cached file's name
    max_bytes: int


_KERNEL = _Wanted("vmlinuz", KERNEL_MAX)
_INITRD = _Wanted("initrd.img", INITRD_MAX)
_CMDLINE = _Wanted("cmdline", CMDLINE_MAX)


def boot_files(image: Path, cache_dir: Path) -> BootFiles:
    """The DI's boot files, extracted into ``cache_dir`` the first time; raises
    :class:`TerminalBackendError` with the reason when the image breaks a rule."""
    try:
        fd = os.open(image, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TerminalBackendError(f"{image.name}: cannot open the DI ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TerminalBackendError(f"{image.name}: the DI is not a regular file")
        _private_dir(cache_dir)
        key = _key(image.name, st)
        entry = cache_dir / key
        with _locked(cache_dir / f"{key}.lock"):
            if not (entry / _CMDLINE.name).is_file():
                _extract(fd, image.name, cache_dir, entry)
    finally:
        os.close(fd)
    cmdline = (entry / _CMDLINE.name).read_text(encoding="ascii")
    return BootFiles(kernel=entry / _KERNEL.name, initrd=entry / _INITRD.name, cmdline=cmdline)


def prune_boot_files(
    cache_dir: Path, images: Iterable[Path], *, grace: float = 3600.0
) -> list[Path]:
    """Remove the cached boot files of every image but ``images`` (those in use or
    still wanted), skipping an entry whose lock is held (being extracted), and
    extraction leftovers older than ``grace`` seconds; returns what was removed."""
    if not cache_dir.is_dir():
        return []
    keep = set()
    for image in images:
        with contextlib.suppress(OSError):
            keep.add(_key(image.name, image.lstat()))
    removed: list[Path] = []
    now = time.time()
    keys: set[str] = set()
    for entry in sorted(cache_dir.iterdir()):
        if not entry.name.startswith("."):
            keys.add(entry.name.removesuffix(".lock"))
            continue
        with contextlib.suppress(OSError):  # an extraction that died
            if now - entry.lstat().st_mtime > grace:
                shutil.rmtree(entry)
                removed.append(entry)
    for key in sorted(keys - keep):
        if not _KEY.match(key):
            continue  # not ours
        lock = cache_dir / f"{key}.lock"
        with _locked(lock, wait=False) as held:
            if held:
                if (cache_dir / key).exists():
                    shutil.rmtree(cache_dir / key, ignore_errors=True)
                    removed.append(cache_dir / key)
                lock.unlink(missing_ok=True)
    return removed


def check_cmdline(raw: bytes) -> str:
    """The kernel command line of ``/boot/qvd/cmdline`` if every word is allowed."""
    if len(raw) > CMDLINE_MAX:
        raise TerminalBackendError(f"{BOOT_DIR}/cmdline is longer than {CMDLINE_MAX} bytes")
    text = raw.removesuffix(b"\n")
    if not text.isascii() or any(c < 0x20 or c == 0x7F for c in text):
        raise TerminalBackendError(f"{BOOT_DIR}/cmdline is not one line of printable ASCII")
    words = text.decode("ascii").split(" ")
    if not words or "" in words:
        raise TerminalBackendError(f"{BOOT_DIR}/cmdline must be words separated by single spaces")
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            if word not in ALLOWED_FLAGS:
                raise TerminalBackendError(f"{BOOT_DIR}/cmdline: {word[:40]!r} is not allowed")
        elif key not in ALLOWED_KEYS:
            raise TerminalBackendError(f"{BOOT_DIR}/cmdline: {key[:40]!r}= is not allowed")
        elif not _VALUE.match(value):
            raise TerminalBackendError(f"{BOOT_DIR}/cmdline: the value of {key}= is not plain")
    return " ".join(words)


def _key(name: str, st: os.stat_result) -> str:
    ident = f"{name}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise TerminalBackendError(f"{path} is not a directory of this daemon's user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        path.chmod(0o700)


@contextlib.contextmanager
def _locked(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """The lock file ``path`` held (True), or not held because another holds it and
    ``wait`` is False (False)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def _extract(fd: int, name: str, cache_dir: Path, entry: Path) -> None:
    """Fill ``entry`` from the image open at ``fd`` (checked, then converted, from
    that one open file); nothing is left behind when it fails."""
    try:
        info = check_qcow2_fd(fd, name, max_virtual_bytes=_VIRTUAL_MAX)
    except ImageRejected as exc:
        raise TerminalBackendError(str(exc)) from None
    work = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_dir))
    ready = Path(tempfile.mkdtemp(prefix=".ready-", dir=cache_dir))
    try:
        raw = work / "disk.raw"
        _convert(fd, name, raw)
        if raw.stat().st_size != info.virtual_size:
            raise TerminalBackendError(f"{name}: qemu-img gave a disk of another size")
        tool_user = _tool_user()
        if tool_user is not None:  # debugfs, the file-system parser, runs unprivileged
            os.chown(work, tool_user.pw_uid, tool_user.pw_gid)
            os.chown(raw, tool_user.pw_uid, tool_user.pw_gid)
        raw.chmod(0o400)
        for wanted in (_KERNEL, _INITRD, _CMDLINE):
            _dump(name, work, wanted, tool_user)
            # copied out by this process, never through a link the tool could make
            _copy_checked(work / f"{wanted.name}.out", ready / wanted.name, wanted)
        _check_kernel(name, ready / _KERNEL.name)
        try:
            cmdline = check_cmdline((ready / _CMDLINE.name).read_bytes())
        except TerminalBackendError as exc:
            raise TerminalBackendError(f"{name}: {exc}") from None
        (ready / _CMDLINE.name).write_text(cmdline, encoding="ascii")
        if not (entry / _CMDLINE.name).is_file():  # (else made meanwhile: keep it)
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(ready, entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ready, ignore_errors=True)


def _image_spec(fd: int) -> str:
    """QEMU's name for the open image: qcow2 over ``/dev/fd/N`` with ``backing: null``,
    so no backing file is ever opened whatever the header says."""
    spec = {
        "driver": "qcow2",
        "backing": None,
        "file": {"driver": "file", "filename": f"/dev/fd/{fd}", "locking": "off"},
    }
    return "json:" + json.dumps(spec)


def _convert(fd: int, name: str, raw: Path) -> None:
    """The whole virtual disk as a sparse raw file, read from the open image, once the
    disk has room for the data it holds (a compressed or repeated cluster expands)."""
    room = shutil.disk_usage(raw.parent).free - _ROOM_MARGIN
    needed = _data_bytes(fd, name, stop_over=room)
    if needed > room:
        raise BackendError(
            f"{name}: its disk holds at least {needed} bytes of data, more than the "
            f"{max(room, 0)} bytes free (less {_ROOM_MARGIN}) in {raw.parent.parent}"
        )
    command = ["qemu-img", "convert", "-q", "-O", "raw", _image_spec(fd), str(raw)]
    _run(command, what=f"{name}: qemu-img convert", pass_fds=(fd,))


def _data_bytes(fd: int, name: str, *, stop_over: int) -> int:
    """Bytes of the virtual disk that hold data (what the raw file will take), from
    ``qemu-img map`` (one JSON object a line), counted until over ``stop_over``."""
    command = ["qemu-img", "map", "--output=json", _image_spec(fd)]
    total, stopped = 0, False
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        pass_fds=(fd,),
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                extent = json.loads(line.strip().lstrip(b"[").rstrip(b",]") or b"{}")
                if extent.get("data") is True:
                    total += int(extent.get("length", 0))
                if total > stop_over:
                    stopped = True
                    break
        except (ValueError, TypeError) as exc:
            stopped = True
            raise TerminalBackendError(f"{name}: cannot read qemu-img map: {exc}") from None
        finally:
            if stopped:
                proc.kill()
            try:
                _, err = proc.communicate(timeout=_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise TerminalBackendError(f"{name}: qemu-img map took too long") from None
        if not stopped and proc.returncode != 0:
            reason = err.decode(errors="replace").strip()[-300:]
            raise TerminalBackendError(f"{name}: qemu-img map failed: {reason}")
    return total


def _dump(name: str, work: Path, wanted: _Wanted, tool_user: pwd.struct_passwd | None) -> None:
    """Write the image's ``BOOT_DIR/<wanted>`` to ``<wanted>.out`` in ``work``: stat it
    by path, refuse all but a bounded regular file, dump it by inode."""
    path = f"{BOOT_DIR}/{wanted.name}"
    out = _debugfs(name, work, f"stat {path}", tool_user, wanted)
    head = _STAT_HEAD.search(out)
    if head is None:
        raise TerminalBackendError(f"{name}: {path} is missing from the image")
    inode, kind = int(head.group(1)), head.group(2)
    if kind != "regular":
        raise TerminalBackendError(f"{name}: {path} is a {kind}, not a regular file")
    size = _STAT_SIZE.search(out)
    if size is None:
        raise TerminalBackendError(f"{name}: cannot read the size of {path}")
    if int(size.group(1)) > wanted.max_bytes:
        raise TerminalBackendError(
            f"{name}: {path} is {size.group(1)} bytes, over the limit of {wanted.max_bytes}"
        )
    _debugfs(name, work, f"dump <{inode}> {wanted.name}.out", tool_user, wanted)


def _debugfs(
    name: str, work: Path, request: str, tool_user: pwd.struct_passwd | None, wanted: _Wanted
) -> str:
    """debugfs's answer to one read-only request on ``work/disk.raw`` (it exits 0 even
    when it cannot open the file system: its error output says so), run with bounded
    memory, output file size and time (a hostile file system may try to exhaust them)."""
    limits = [f"--as={_DEBUGFS_MEMORY}", f"--fsize={wanted.max_bytes}", f"--cpu={_DEBUGFS_CPU}"]
    command = ["prlimit", *limits, "--", "debugfs", "-c", "-R", request, "disk.raw"]
    out, err = _run(
        command, cwd=work, user=tool_user, what=f"{name}: debugfs", timeout=_DEBUGFS_CPU * 4
    )
    if "while trying to open" in err or "Filesystem not open" in err:
        raise TerminalBackendError(f"{name}: the disk is not an ext4 file system debugfs can read")
    return out


def _copy_checked(source: Path, target: Path, wanted: _Wanted) -> None:
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise TerminalBackendError(
            f"{BOOT_DIR}/{wanted.name} was not extracted ({exc.strerror})"
        ) from None
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > wanted.max_bytes:
            raise TerminalBackendError(
                f"{BOOT_DIR}/{wanted.name} was not extracted as a bounded file"
            )
        out_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(out_fd, "wb") as dst:
            copied = 0
            while chunk := src.read(1 << 20):
                copied += len(chunk)
                if copied > wanted.max_bytes:
                    raise TerminalBackendError(f"{BOOT_DIR}/{wanted.name} grew while copied")
                dst.write(chunk)


def _check_kernel(image_name: str, kernel: Path) -> None:
    with open(kernel, "rb") as f:
        head = f.read(0x206)
    if head[:4] != _ELF_MAGIC and head[0x202:0x206] != _BZIMAGE_MAGIC:
        raise TerminalBackendError(
            f"{image_name}: {BOOT_DIR}/vmlinuz is not a Linux kernel (neither bzImage nor ELF)"
        )


def _tool_user() -> pwd.struct_passwd | None:
    """Who runs the file-system parser: ``nobody`` when the daemon is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


def _run(
    command: list[str],
    *,
    what: str,
    cwd: Path | None = None,
    user: pwd.struct_passwd | None = None,
    pass_fds: tuple[int, ...] = (),
    timeout: float = _TIMEOUT,
) -> tuple[str, str]:
    """The command's standard and error output; the latter is the reason when it fails."""
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL, pass_fds=pass_fds,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )  # fmt: skip
    except FileNotFoundError:
        raise TerminalBackendError(f"{what}: {command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise TerminalBackendError(f"{what}: took more than {timeout:.0f} s") from None
    err = done.stderr.decode(errors="replace").strip()
    if done.returncode != 0:
        raise TerminalBackendError(f"{what} failed: {err[-300:]}")
    return done.stdout.decode(errors="replace"), err
