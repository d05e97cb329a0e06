"""What the all-in-one node sets up for itself: its ``hosts`` row and a demo OSF whose
published DI is the demo disk image. Idempotent: a second ``qvd up`` finds both."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from qvd.config.names import HOST_NAME, check_host_address
from qvd.db import generate_password, hash_password
from qvd.db.vmaddress import free_vm_ip

__all__ = [
    "DEMO_OSF",
    "DemoDesktop",
    "DemoImage",
    "DesktopState",
    "desktop_state",
    "ensure_demo_desktop",
    "import_demo_image",
    "register_host",
    "start_desktop",
]

DEMO_OSF = "demo"
DEFAULT_TENANT = 1


@dataclass(frozen=True, slots=True)
class DemoImage:
    osf_id: int
    di_id: int
    path: Path
    created: bool


def register_host(engine: Engine, name: str, address: str) -> tuple[int, bool]:
    """This node's ``hosts`` row (created if missing); returns (id, created). The name
    and address follow the host rules (qvd.config.names), else NameRuleError."""
    name, address = HOST_NAME.check(name), check_host_address(address)
    with engine.begin() as conn:
        row = conn.execute(
            text("SELECT id, address FROM hosts WHERE name = :n"), {"n": name}
        ).one_or_none()
        if row is not None:
            if row.address != address:
                conn.execute(
                    text("UPDATE hosts SET address = :a WHERE id = :i"), {"a": address, "i": row.id}
                )
            return int(row.id), False
        host_id = conn.execute(
            text(
                "INSERT INTO hosts (name, address, description) VALUES (:n, :a, "
                "'registered by qvd up') RETURNING id"
            ),
            {"n": name, "a": address},
        ).scalar_one()
    return int(host_id), True


def import_demo_image(engine: Engine, image: Path, images_dir: Path, memory_mb: int) -> DemoImage:
    """The demo OSF (tenant ``default``) with ``image`` as its published DI tagged
    ``default`` and ``head``; a new DI only when the image file changed."""
    images_dir.mkdir(parents=True, exist_ok=True)
    with engine.begin() as conn:
        osf_id = conn.execute(
            text("SELECT id FROM osfs WHERE name = :n AND tenant_id = :t"),
            {"n": DEMO_OSF, "t": DEFAULT_TENANT},
        ).scalar()
        if osf_id is None:
            osf_id = conn.execute(
                text(
                    "INSERT INTO osfs (tenant_id, name, memory, user_storage_size, description) "
                    "VALUES (:t, :n, :m, 1024, 'demo desktops made by qvd up') RETURNING id"
                ),
                {"t": DEFAULT_TENANT, "n": DEMO_OSF, "m": memory_mb},
            ).scalar_one()
        existing = conn.execute(
            text("SELECT id, path FROM dis WHERE osf_id = :o AND path LIKE :p ORDER BY id DESC"),
            {"o": osf_id, "p": f"%-{image.name}"},
        ).first()
        if existing is not None and (images_dir / existing.path).is_file():
            return DemoImage(
                osf_id=osf_id, di_id=existing.id, path=images_dir / existing.path, created=False
            )
        version = image.name.split(".")[0]
        di_id = conn.execute(
            text(
                "INSERT INTO dis (osf_id, path, version, description) VALUES (:o, '', :v, "
                "'demo disk image') ON CONFLICT (osf_id, version) DO UPDATE SET path = '' "
                "RETURNING id"
            ),
            {"o": osf_id, "v": version},
        ).scalar_one()
        target = images_dir / f"{di_id}-{image.name}"
        try:
            os.link(image, target)
        except FileExistsError:
            pass
        except OSError:
            shutil.copyfile(image, target)
        conn.execute(text("UPDATE dis SET path = :p WHERE id = :d"), {"p": target.name, "d": di_id})
        # tags move to the new image: one tag per OSF (the database enforces it)
        conn.execute(
            text("DELETE FROM di_tags WHERE osf_id = :o AND tag IN ('default', 'head')"),
            {"o": osf_id},
        )
        conn.execute(
            text(
                "INSERT INTO di_tags (di_id, tag, fixed) VALUES (:d, 'default', false), "
                "(:d, 'head', false), (:d, :v, true) ON CONFLICT DO NOTHING"
            ),
            {"d": di_id, "v": version},
        )
        conn.execute(
            text("UPDATE di_runtimes SET state = 'published', state_ts = now() WHERE di_id = :d"),
            {"d": di_id},
        )
    return DemoImage(osf_id=osf_id, di_id=di_id, path=target, created=True)


@dataclass(frozen=True, slots=True)
class DemoDesktop:
    user: str
    vm_id: int
    password_file: Path


def ensure_demo_desktop(
    engine: Engine,
    osf_id: int,
    password_file: Path,
    *,
    ip_start: str,
    netmask: str,
    login: str = "demo",
) -> DemoDesktop:
    """A demo user (tenant ``default``) with one VM in the demo OSF, given the first
    free VM address when it is made.

    The user's password is generated and kept only in ``password_file`` (root-only);
    if that file is lost a new password is made."""
    with engine.begin() as conn:
        user = conn.execute(
            text("SELECT id FROM users WHERE login = :l AND tenant_id = :t"),
            {"l": login, "t": DEFAULT_TENANT},
        ).scalar()
        if user is None or not password_file.is_file():
            password = generate_password()
            hashed = hash_password(password)
            if user is None:
                user = conn.execute(
                    text(
                        "INSERT INTO users (tenant_id, login, password, description) "
                        "VALUES (:t, :l, :p, 'demo user made by qvd up') RETURNING id"
                    ),
                    {"t": DEFAULT_TENANT, "l": login, "p": hashed},
                ).scalar_one()
            else:
                conn.execute(
                    text("UPDATE users SET password = :p WHERE id = :u"), {"p": hashed, "u": user}
                )
            password_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
        vm_id = conn.execute(
            text("SELECT id FROM vms WHERE user_id = :u AND osf_id = :o ORDER BY id LIMIT 1"),
            {"u": user, "o": osf_id},
        ).scalar()
        if vm_id is None:
            vm_ip = free_vm_ip(conn, ip_start, netmask)
            if vm_ip is None:
                raise RuntimeError(f"no free VM address from {ip_start} (netmask {netmask})")
            vm_id = conn.execute(
                text(
                    "INSERT INTO vms (name, user_id, osf_id, ip, description) VALUES "
                    "('demo-desktop', :u, :o, :ip, 'demo desktop made by qvd up') RETURNING id"
                ),
                {"u": user, "o": osf_id, "ip": vm_ip},
            ).scalar_one()
    return DemoDesktop(user=login, vm_id=int(vm_id), password_file=password_file)


@dataclass(frozen=True, slots=True)
class DesktopState:
    vm_state: str
    vm_cmd: str | None
    blocked: bool
    last_error: str | None


def start_desktop(engine: Engine, vm_id: int, host_id: int) -> bool:
    """Ask this node (``host_id``) to start the VM, as the API's start does, when it is
    stopped with no command pending; False when it runs or a command is pending."""
    with engine.begin() as conn:
        started = conn.execute(
            text(
                "UPDATE vm_runtimes SET host_id = :h, vm_cmd = 'start', last_error = NULL "
                "WHERE vm_id = :v AND vm_state = 'stopped' AND vm_cmd IS NULL AND NOT blocked"
            ),
            {"h": host_id, "v": vm_id},
        ).rowcount
    return bool(started)


def desktop_state(engine: Engine, vm_id: int) -> DesktopState:
    with engine.begin() as conn:
        row = conn.execute(
            text("SELECT vm_state, vm_cmd, blocked, last_error FROM vm_runtimes WHERE vm_id = :v"),
            {"v": vm_id},
        ).one()
    return DesktopState(
        vm_state=row.vm_state, vm_cmd=row.vm_cmd, blocked=row.blocked, last_error=row.last_error
    )
