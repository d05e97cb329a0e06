"""Start a container from a private mount namespace that holds its storage views.

Run as a script by the HKD (``python -I -S mountns.py SPEC -- lxc-start …``): standard
library only, so it starts fast and imports nothing of the package. It

1. moves itself into a new mount namespace with private propagation, so nothing it
   mounts is ever seen on the host and everything goes when the container ends (the
   namespace lives as long as LXC's monitor, which is started from it);
2. mounts a read-only idmapped view of the DI's shared base (host uid/gid 0.. appear
   as ``start``.. ), and binds the VM's overlay layer and home into the container's
   own directory: the only path the container's mapped root has to traverse, since
   the storage parents are 0700 root;
3. detaches, in that namespace, every mount below the ``--detach`` paths (the homes of
   other VMs, each a file system of its own): the namespace outlives this start, and a
   copy of another VM's home mount kept in it would keep that file system alive after
   the node unmounts it, so a restart would mount the same image twice;
4. executes ``lxc-start``.

SPEC: ``--base PATH --lower PATH --start N --count N`` and any number of
``--bind SOURCE TARGET`` and ``--detach PATH``.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["idmapped_view", "main", "mounts_below", "parse_spec"]

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x00100000
# the same numbers on every architecture that has them (the unified syscall table)
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            None,
        ),
        f"mount {source} on {target}",
    )


def _userns_fd(start: int, count: int) -> int:
    """A user namespace mapping 0..count to start..: a child that unshares it and waits
    while its maps are written and its namespace is opened."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(ready_r)
        os.close(done_w)
        code = 0 if _libc.unshare(CLONE_NEWUSER) == 0 else 1
        os.write(ready_w, b"x" if code == 0 else b"!")
        os.read(done_r, 1)
        os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"x":
            raise OSError("cannot create a user namespace for the idmapped view")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(f"0 {start} {count}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def idmapped_view(base: str, target: str, start: int, count: int) -> None:
    """Mount ``base`` read-only at ``target`` with its owners shifted by ``start``."""
    userns = _userns_fd(start, count)
    try:
        tree = _check(
            _libc.syscall(
                SYS_OPEN_TREE, AT_FDCWD, base.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC
            ),
            f"open_tree {base}",
        )
        try:
            attr = _MountAttr(
                attr_set=MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV,
                attr_clr=0, propagation=0, userns_fd=userns,
            )  # fmt: skip
            _check(
                _libc.syscall(
                    SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr),
                    ctypes.sizeof(attr),
                ),
                f"mount_setattr (idmap) {base}",
            )  # fmt: skip
            _check(
                _libc.syscall(
                    SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH
                ),
                f"move_mount {base} to {target}",
            )
        finally:
            os.close(tree)
    finally:
        os.close(userns)


def _unescape(field: str) -> str:
    """A mountinfo path (spaces, tabs, newlines and backslashes as octal escapes)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_below(mountinfo: str, roots: list[str]) -> list[str]:
    """Mount points at or below any of ``roots``, deepest first."""
    found = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape(fields[4])
        if any(point == r or point.startswith(r.rstrip("/") + "/") for r in roots):
            found.add(point)
    return sorted(found, key=lambda p: (p.count("/"), p), reverse=True)


def parse_spec(words: list[str]) -> tuple[dict[str, str], list[tuple[str, str]], list[str]]:
    """``--base P --lower P --start N --count N [--bind SOURCE TARGET]... [--detach P]...``
    into the single options, the (source, target) binds and the paths to detach. Each
    path is one argv word, so any byte a path may hold is fine."""
    single: dict[str, str] = {}
    binds: list[tuple[str, str]] = []
    detach: list[str] = []
    rest = list(words)
    while rest:
        option = rest.pop(0)
        if option == "--bind" and len(rest) >= 2:
            binds.append((rest.pop(0), rest.pop(0)))
        elif option == "--detach" and rest:
            detach.append(rest.pop(0))
        elif option in ("--base", "--lower", "--start", "--count") and rest:
            single[option[2:]] = rest.pop(0)
        else:
            raise ValueError(f"unexpected argument {option!r}")
    missing = {"base", "lower", "start", "count"} - single.keys()
    if missing:
        raise ValueError(f"missing --{', --'.join(sorted(missing))}")
    return single, binds, detach


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: mountns.py SPEC... -- COMMAND...", file=sys.stderr)
        return 2
    cut = argv.index("--")
    try:
        single, binds, detach = parse_spec(argv[:cut])
        command = argv[cut + 1 :]
        _check(_libc.unshare(CLONE_NEWNS), "unshare (mount namespace)")
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        idmapped_view(single["base"], single["lower"], int(single["start"]), int(single["count"]))
        for source, target in binds:
            _mount(source, target, None, MS_BIND)
        if detach:
            with open("/proc/self/mountinfo", encoding="utf-8") as f:
                doomed = mounts_below(f.read(), detach)
            for point in doomed:
                _check(_libc.umount2(point.encode(), MNT_DETACH), f"detach {point}")
    except (OSError, ValueError) as exc:
        print(f"qvd mountns: {exc}", file=sys.stderr)
        return 1
    os.execvp(command[0], command)  # noqa: S606 - the caller's fixed lxc-start argv


if __name__ == "__main__":  # pragma: no cover - run as a script by the HKD
    sys.exit(main(sys.argv[1:]))
