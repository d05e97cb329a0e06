"""The layered configuration: built-in defaults < file < database (global) < database
(tenant).

Values may refer to other tokens as ``${other.key}``; references are resolved when a
value is read, in the same layering (so a tenant override of ``a`` is seen by ``b =
${a}`` for that tenant). Everything that can be checked at load time is: unknown
tokens (with a suggestion), values of the wrong type, references to nothing, and
reference cycles, each reported with the file and line it came from.

References out of the database are confined (``qvd.config.tokens``): a tenant's row
may expand only per-tenant, non-secret tokens, a global row anything but node-local
and secret tokens, and the confinement holds along the whole chain of references (a
tenant row that names a token whose global value names a secret is refused too).
Rows written before the rule existed are refused when read, never expanded. The error
names the references, never a value.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from qvd.config.errors import ConfigFileError, ConfigValueError
from qvd.config.properties import parse_properties
from qvd.config.tokens import (
    TOKENS,
    Kind,
    db_may_refer_to,
    is_node_local,
    is_per_tenant,
    is_secret,
    kind_of,
    tenant_may_refer_to,
)
from qvd.config.values import check_value, parse_bool, parse_list

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "GLOBAL_TENANT",
    "Config",
    "Setting",
    "config_from_text",
    "current_os",
    "load_config",
    "references",
]

DEFAULT_CONFIG_PATH = Path("/etc/qvd/node.conf")
GLOBAL_TENANT = -1
CONFIG_ENV = "QVD_CONFIG"

_REFERENCE = re.compile(r"\$\{([^}]*)\}")


class _Trust(IntEnum):
    """Where a value was written, from most to least trusted (references are confined
    to what the least trusted value along the chain may see)."""

    NODE = 0  # built-in defaults and node.conf
    DATABASE = 1  # global database rows (tenant -1)
    TENANT = 2  # one tenant's rows


def _may_refer(trust: _Trust, name: str) -> bool:
    if trust is _Trust.TENANT:
        return tenant_may_refer_to(name)
    if trust is _Trust.DATABASE:
        return db_may_refer_to(name)
    return True


def _confined(name: str, ref: str, trust: _Trust, setting: Setting | None) -> ConfigValueError:
    row = "a tenant" if trust is _Trust.TENANT else "a global database"
    allowed = (
        "per-tenant tokens that are not secret"
        if trust is _Trust.TENANT
        else ("tokens that are neither node-local nor secret")
    )
    return ConfigValueError(
        f"{name} refers to ${{{ref}}}: {row} row may refer only to {allowed}",
        source=setting.source if setting is not None else None,
        line=setting.line if setting is not None else None,
    )


def references(value: str) -> list[str]:
    """The token names ``value`` refers to as ``${name}``."""
    return _REFERENCE.findall(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """A value and where it was written."""

    value: str
    source: str
    line: int | None = None


def current_os(os_release: Path = Path("/etc/os-release")) -> str:
    """``<ID>-<VERSION_ID>`` of this machine, e.g. ``debian-12`` (for ``@os@key`` lines)."""
    fields: dict[str, str] = {}
    try:
        for raw in os_release.read_text().splitlines():
            key, sep, value = raw.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip('"')
    except OSError:
        return ""
    return f"{fields.get('ID', '')}-{fields.get('VERSION_ID', '')}"


def _unknown_token_error(name: str, setting: Setting) -> ConfigValueError:
    known = [t.name for t in TOKENS]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigValueError(
        f"unknown configuration token {name!r}{hint}", source=setting.source, line=setting.line
    )


class Config:
    """An immutable, layered view of the configuration.

    Build it with :func:`load_config`, then add database rows with :meth:`with_db`.
    """

    def __init__(
        self,
        file_settings: Mapping[str, Setting] | None = None,
        global_rows: Mapping[str, str] | None = None,
        tenant_rows: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        self._defaults: dict[str, Setting] = {
            t.name: Setting(value=t.default, source="built-in default")
            for t in TOKENS
            if t.default is not None
        }
        self._file: dict[str, Setting] = dict(file_settings or {})
        self._global: dict[str, Setting] = {
            k: Setting(value=v, source="database configs (global)")
            for k, v in (global_rows or {}).items()
            if not is_node_local(k)
        }
        self._tenants: dict[int, dict[str, Setting]] = {
            tenant: {
                k: Setting(value=v, source=f"database configs (tenant {tenant})")
                for k, v in rows.items()
                if is_per_tenant(k)
            }
            for tenant, rows in (tenant_rows or {}).items()
            if tenant != GLOBAL_TENANT
        }
        self.validate()

    # ---- building -----------------------------------------------------------------
    def with_db(
        self,
        global_rows: Mapping[str, str],
        tenant_rows: Mapping[int, Mapping[str, str]] | None = None,
    ) -> Config:
        """A copy with the database's ``configs`` rows laid over the file."""
        return Config(self._file, global_rows, tenant_rows)

    def with_overrides(self, values: Mapping[str, str], *, source: str = "override") -> Config:
        """A copy with ``values`` laid over the file (for tools and tests)."""
        merged = dict(self._file)
        merged.update({k: Setting(value=v, source=source) for k, v in values.items()})
        return Config(merged, self._global_rows(), self._tenant_rows())

    def _global_rows(self) -> dict[str, str]:
        return {k: s.value for k, s in self._global.items()}

    def _tenant_rows(self) -> dict[int, dict[str, str]]:
        return {t: {k: s.value for k, s in rows.items()} for t, rows in self._tenants.items()}

    # ---- reading --------------------------------------------------------------------
    def setting(self, name: str, tenant_id: int | None = None) -> Setting | None:
        """The uninterpolated setting that wins for ``name`` (and tenant), if any."""
        return self._winner(name, tenant_id)[0]

    def _winner(self, name: str, tenant_id: int | None) -> tuple[Setting | None, _Trust]:
        if tenant_id is not None and tenant_id in self._tenants:
            found = self._tenants[tenant_id].get(name)
            if found is not None:
                return found, _Trust.TENANT
        layers = (
            (self._global, _Trust.DATABASE),
            (self._file, _Trust.NODE),
            (self._defaults, _Trust.NODE),
        )
        for layer, trust in layers:
            found = layer.get(name)
            if found is not None:
                return found, trust
        return None, _Trust.NODE

    def names(self) -> list[str]:
        """Every token with a value in some layer, sorted."""
        keys = set(self._defaults) | set(self._file) | set(self._global)
        for rows in self._tenants.values():
            keys |= set(rows)
        return sorted(keys)

    def raw(self, name: str, tenant_id: int | None = None) -> str | None:
        """The interpolated text of ``name``, or None if it has no value anywhere."""
        return self._resolve(name, tenant_id, ())

    def _resolve(
        self,
        name: str,
        tenant_id: int | None,
        chain: tuple[str, ...],
        trust: _Trust = _Trust.NODE,
    ) -> str | None:
        setting, written_by = self._winner(name, tenant_id)
        if setting is None:
            return None
        if name in chain:
            cycle = " -> ".join((*chain, name))
            raise ConfigValueError(
                f"reference cycle: {cycle}", source=setting.source, line=setting.line
            )
        trust = max(trust, written_by)

        def substitute(match: re.Match[str]) -> str:
            ref = match.group(1)
            if not _may_refer(trust, ref):
                raise _confined(name, ref, trust, setting)
            value = self._resolve(ref, tenant_id, (*chain, name), trust)
            if value is None:
                raise ConfigValueError(
                    f"{name} refers to ${{{ref}}}, which has no value",
                    source=setting.source,
                    line=setting.line,
                )
            return value

        return _REFERENCE.sub(substitute, setting.value)

    def get(self, name: str, tenant_id: int | None = None) -> str:
        """The text of a token that must have a value."""
        value = self.raw(name, tenant_id)
        if value is None:
            raise ConfigValueError(f"{name} is not set (it has no default: set it in node.conf)")
        return value

    def get_int(self, name: str, tenant_id: int | None = None) -> int:
        return int(self._typed(name, tenant_id, Kind.INT))

    def get_float(self, name: str, tenant_id: int | None = None) -> float:
        return float(self._typed(name, tenant_id, Kind.FLOAT))

    def get_bool(self, name: str, tenant_id: int | None = None) -> bool:
        return parse_bool(self._typed(name, tenant_id, Kind.BOOL))

    def get_list(self, name: str, tenant_id: int | None = None) -> list[str]:
        return parse_list(self.get(name, tenant_id))

    def get_path(self, name: str, tenant_id: int | None = None) -> Path:
        return Path(self.get(name, tenant_id))

    def _typed(self, name: str, tenant_id: int | None, kind: Kind) -> str:
        text = self.get(name, tenant_id)
        try:
            check_value(kind, text)
        except ValueError as exc:
            setting = self.setting(name, tenant_id)
            raise ConfigValueError(
                f"{name}: {exc}",
                source=setting.source if setting else None,
                line=setting.line if setting else None,
            ) from None
        return text.strip()

    def secret_values(self) -> frozenset[str]:
        """Every non-empty value of a secret token, in any layer (as written and as
        expanded): what logs and audit entries must never show."""
        found: set[str] = set()
        layers: list[tuple[int | None, Mapping[str, Setting]]] = [
            (None, self._defaults),
            (None, self._file),
            (None, self._global),
            *self._tenants.items(),
        ]
        for tenant_id, layer in layers:
            for name, setting in layer.items():
                if not is_secret(name):
                    continue
                found.add(setting.value)
                try:
                    found.add(self.raw(name, tenant_id) or "")
                except ConfigValueError:
                    continue
        found.discard("")
        return frozenset(found)

    # ---- checking ---------------------------------------------------------------------
    def check_db_row(self, key: str, value: str, tenant_id: int) -> None:
        """Refuse a database row ``key = value`` of ``tenant_id`` (-1: global) that
        would expand, directly or through other tokens' values, a token such a row may
        not see. Raises ``ConfigValueError`` naming the references, never a value."""
        trust = _Trust.DATABASE if tenant_id == GLOBAL_TENANT else _Trust.TENANT
        seen: set[str] = {key}
        pending = [(key, value)]
        while pending:
            name, text = pending.pop()
            for ref in references(text):
                if not _may_refer(trust, ref):
                    raise _confined(name, ref, trust, None)
                if ref in seen:
                    continue
                seen.add(ref)
                setting = self.setting(ref, None if tenant_id == GLOBAL_TENANT else tenant_id)
                if setting is not None:
                    pending.append((ref, setting.value))

    def validate(self) -> None:
        """Check every written value: known token, right type, references resolve."""
        layers: list[tuple[int | None, Mapping[str, Setting]]] = [
            (None, self._file),
            (None, self._global),
        ]
        layers += list(self._tenants.items())
        for tenant_id, layer in layers:
            for name, setting in layer.items():
                kind = kind_of(name)
                if kind is None:
                    raise _unknown_token_error(name, setting)
                resolved = self._resolve(name, tenant_id, ())
                assert resolved is not None
                try:
                    check_value(kind, resolved)
                except ValueError as exc:
                    raise ConfigValueError(
                        f"{name}: {exc}", source=setting.source, line=setting.line
                    ) from None
        for name in self._defaults:
            self._resolve(name, None, ())


def load_config(path: Path | str | None = None, *, os_id: str | None = None) -> Config:
    """Read the node's configuration file.

    ``path`` None means ``$QVD_CONFIG`` or else ``/etc/qvd/node.conf``; a missing
    default file is not an error (built-in defaults apply), a missing named one is.
    """
    explicit = path is not None or CONFIG_ENV in os.environ
    chosen = (
        Path(path)
        if path is not None
        else Path(os.environ.get(CONFIG_ENV, str(DEFAULT_CONFIG_PATH)))
    )
    try:
        text = chosen.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigFileError("configuration file not found", source=str(chosen)) from None
        return Config()
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"not UTF-8 text ({exc.reason})", source=str(chosen)) from None
    except OSError as exc:
        raise ConfigFileError(exc.strerror or str(exc), source=str(chosen)) from None
    return config_from_text(text, source=str(chosen), os_id=os_id)


def config_from_text(text: str, *, source: str = "<string>", os_id: str | None = None) -> Config:
    """A configuration from properties text (a file's content)."""
    this_os = current_os() if os_id is None else os_id
    settings: dict[str, Setting] = {}
    for entry in parse_properties(text, source=source):
        if entry.os_selector is not None and entry.os_selector != this_os:
            continue
        settings[entry.key] = Setting(value=entry.value, source=source, line=entry.line)
    return Config(settings)
