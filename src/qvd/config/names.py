"""Names are data, never syntax: one validation rule per kind of name.

Every name an administrator, a client or a directory gives (VM, login, tenant, OSF,
role, DI file and tag, host, property and configuration keys, property values) is
checked here where it enters (the API, the L7R) and again where it meets a
configuration file, a path or a command line (the HKD, the LXC renderer). A rule
refuses, never repairs: the caller turns :class:`NameRuleError` into its own error
(the API: 6320 with the reason; the L7R: 401).

What every rule refuses, whatever the kind:

- control characters (C0, DEL, C1: newline, carriage return, NUL, escape ...),
- Unicode line and paragraph separators and the other characters Python's
  ``str.splitlines`` breaks on,
- invisible formatting characters (category Cf): bidi embeddings, overrides and
  isolates (U+202A-U+202E, U+2066-U+2069), zero-width characters, the BOM,
- surrogates, private-use and unassigned code points,
- more characters than the kind allows (each rule has a bound).

Names (VM, OSF, role, tenant, login, administrator, host) use an allow-list:
letters and digits of any script plus a few punctuation characters; the first
character may not be ``-`` (read as an option by commands) or ``.`` (``.`` and
``..`` are path syntax; ``.name`` is hidden). Free text that is still a key or a
file name (DI file name, property key, configuration key) refuses the characters
that are syntax where it goes (``/`` for paths, ``=`` and ``:`` for properties
files). Values (property and configuration values) may hold any printable text and
a tab.

``login_path_key`` gives the directory name of a per-user home (``homefs/<key>``)
and ``is_safe_config_value`` tells whether a value can follow ``key =`` on one line
of a configuration file (LXC's); both refuse rows stored before these rules.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace

__all__ = [
    "ADMIN_NAME",
    "CONFIG_KEY",
    "CONFIG_VALUE",
    "DI_FILE_NAME",
    "DI_TAG",
    "HOST_NAME",
    "LOGIN",
    "OSF_NAME",
    "PATH_COMPONENT",
    "PROPERTY_KEY",
    "PROPERTY_VALUE",
    "ROLE_NAME",
    "TENANT_NAME",
    "VM_NAME",
    "NameRule",
    "NameRuleError",
    "char_problem",
    "check_host_address",
    "is_safe_config_value",
    "is_safe_path_component",
    "login_path_key",
    "shown",
]

_SHOWN_MAX = 60
# characters str.splitlines() breaks a line on, besides \n and \r (all but two are Cc)
_LINE_BREAKS = frozenset("\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


class NameRuleError(ValueError):
    """A name that breaks its rule: ``kind`` says which rule ("VM name"), ``reason``
    why, ``rule`` what the rule allows."""

    def __init__(self, kind: str, value: object, reason: str, rule: str) -> None:
        self.kind = kind
        self.value = value
        self.reason = reason
        self.rule = rule
        super().__init__(f"{shown(value)} is not a valid {kind}: {reason} ({rule})")


def shown(value: object) -> str:
    """``value`` for an error message: quoted, escaped (``repr`` shows a newline as
    ``\\n`` and a bidi override as ``\\u202e``), and cut at 60 characters."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    if len(value) > _SHOWN_MAX:
        return repr(value[:_SHOWN_MAX]) + f"... ({len(value)} characters)"
    return repr(value)


def char_problem(ch: str, *, allow_tab: bool = False) -> str | None:
    """Why ``ch`` may never be part of a name or value, or None."""
    code = f"U+{ord(ch):04X}"
    if ch == "\t" and allow_tab:
        return None
    if ch in _LINE_BREAKS or ch in "\n\r":
        return f"it contains a line break ({code})"
    category = unicodedata.category(ch)
    if category == "Cc":
        return f"it contains the control character {code}"
    if category == "Cf":
        return f"it contains the invisible formatting character {code} (bidi or zero-width)"
    if category == "Cs":
        return f"it contains the lone surrogate {code}"
    if category == "Co":
        return f"it contains the private-use character {code}"
    if category == "Cn":
        return f"it contains the unassigned code point {code}"
    return None


def _is_letter_or_digit(ch: str, ascii_only: bool) -> bool:
    if ascii_only and not ch.isascii():
        return False
    return unicodedata.category(ch)[0] in "LN" or (
        not ascii_only and unicodedata.category(ch)[0] == "M"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NameRule:
    """The rule of one kind of name.

    ``punctuation`` (allow-list mode) lists what is allowed besides letters and
    digits (of any script unless ``ascii_only``); ``printable`` (deny-list mode)
    allows any printable character but those in ``forbidden``. ``inner_space``
    allows U+0020 inside (never first or last). ``bad_first`` characters may not
    start the name. ``whole`` adds a whole-value check (host names)."""

    kind: str
    max_len: int
    summary: str
    punctuation: str = ""
    printable: bool = False
    forbidden: str = ""
    inner_space: bool = False
    ascii_only: bool = False
    allow_tab: bool = False
    allow_empty: bool = False
    bad_first: str = "-."
    whole: Callable[[str], str | None] | None = None

    def problem(self, value: object) -> str | None:
        """Why ``value`` breaks the rule, or None when it follows it."""
        if not isinstance(value, str):
            return "it is not text"
        if not value:
            return None if self.allow_empty else "it is empty"
        if len(value) > self.max_len:
            return f"it is longer than {self.max_len} characters ({len(value)})"
        for ch in value:
            if (why := char_problem(ch, allow_tab=self.allow_tab)) is not None:
                return why
        for ch in value:
            if ch.isspace():  # a tab here is one the rule allows (char_problem)
                if ch != "\t" and not (self.inner_space and (self.printable or ch == " ")):
                    return f"it contains the blank U+{ord(ch):04X}"
                continue
            if ch in self.forbidden:
                return f"it contains {ch!r}"
            if self.printable or ch in self.punctuation:
                continue
            if not _is_letter_or_digit(ch, self.ascii_only):
                return f"it contains {ch!r}"
        if not self.allow_empty and value != value.strip():
            return "it starts or ends with a blank"
        if value[0] in self.bad_first:
            return f"it starts with {value[0]!r}"
        if unicodedata.category(value[0])[0] == "M":
            return "it starts with a combining mark"
        if self.whole is not None:
            return self.whole(value)
        return None

    def check(self, value: object) -> str:
        """``value`` itself when it follows the rule; :class:`NameRuleError` otherwise."""
        why = self.problem(value)
        if why is not None:
            raise NameRuleError(self.kind, value, why, self.summary)
        assert isinstance(value, str)
        return value

    def is_valid(self, value: object) -> bool:
        return self.problem(value) is None


_DISPLAY_PUNCTUATION = "._-@+()[]:'"
_DISPLAY = (
    "letters and digits of any script, blanks inside and . _ - @ + ( ) [ ] : ', "
    "not starting with - or ."
)

VM_NAME = NameRule(
    kind="VM name",
    max_len=64,
    punctuation=_DISPLAY_PUNCTUATION,
    inner_space=True,
    summary=f"a VM name is 1-64 {_DISPLAY}",
)
OSF_NAME = replace(VM_NAME, kind="OSF name", summary=f"an OSF name is 1-64 {_DISPLAY}")
ROLE_NAME = replace(VM_NAME, kind="role name", summary=f"a role name is 1-64 {_DISPLAY}")
LOGIN = NameRule(
    kind="login",
    max_len=64,
    punctuation="._-@",
    bad_first="-.@",
    summary=(
        "a login is 1-64 letters and digits of any script and . _ - @, not starting "
        "with - . or @ (give the tenant after a separator when logging in: user@tenant)"
    ),
)
ADMIN_NAME = replace(
    LOGIN,
    kind="administrator name",
    summary=(
        "an administrator name is 1-64 letters and digits of any script and . _ - @, "
        "not starting with - . or @"
    ),
)
TENANT_NAME = NameRule(
    kind="tenant name",
    max_len=80,
    punctuation="._-",
    inner_space=True,
    summary=(
        "a tenant name is 1-80 letters and digits of any script, blanks inside and . _ -, "
        "not starting with - or . (never @ or #: they separate the tenant in a login)"
    ),
)
DI_FILE_NAME = NameRule(
    kind="disk image file name",
    max_len=255,
    printable=True,
    inner_space=True,
    forbidden="/\\",
    summary=(
        "a disk image file name is one plain file name of 1-255 printable characters "
        "(blanks inside): no / or \\, not starting with - or ."
    ),
)
PATH_COMPONENT = replace(
    DI_FILE_NAME,
    kind="path component",
    summary=(
        "a path component is 1-255 printable characters (blanks inside): no / or \\, "
        "not starting with - or ."
    ),
)
DI_TAG = NameRule(
    kind="tag",
    max_len=128,
    printable=True,
    forbidden="/\\ \"'`$;,=",
    bad_first="-",
    summary=(
        "a tag (or DI version) is 1-128 printable characters without blanks, "
        "/ \\ \" ' ` $ ; , or =, not starting with -"
    ),
)


def _host_name_problem(value: str) -> str | None:
    if value.endswith("."):
        value = value[:-1]
    for label in value.split("."):
        if not label:
            return "it has an empty label (two dots in a row)"
        if len(label) > 63:
            return "a label is longer than 63 characters"
        if label[0] == "-" or label[-1] == "-":
            return f"the label {label!r} starts or ends with -"
    return None


HOST_NAME = NameRule(
    kind="host name",
    max_len=127,
    punctuation=".-",
    ascii_only=True,
    whole=_host_name_problem,
    summary=(
        "a host name is 1-127 characters of DNS labels: ASCII letters, digits and -, "
        "labels of 1-63 separated by dots, none starting or ending with -"
    ),
)
PROPERTY_KEY = NameRule(
    kind="property key",
    max_len=1024,
    printable=True,
    forbidden="=:\\",
    bad_first="-#!",
    summary=(
        "a property key is 1-1024 printable characters without blanks, = : or \\, "
        "not starting with - # or !"
    ),
)
PROPERTY_VALUE = NameRule(
    kind="property value",
    max_len=32768,
    printable=True,
    inner_space=True,
    allow_tab=True,
    allow_empty=True,
    bad_first="",
    summary=(
        "a property value is up to 32768 printable characters (tabs allowed; no line "
        "breaks, control or invisible formatting characters)"
    ),
)
CONFIG_KEY = NameRule(
    kind="configuration key",
    max_len=64,
    punctuation="._-",
    ascii_only=True,
    summary=(
        "a configuration key is 1-64 ASCII letters, digits and . _ -, not starting with - or ."
    ),
)
CONFIG_VALUE = NameRule(
    kind="configuration value",
    max_len=4096,
    printable=True,
    inner_space=True,
    allow_tab=True,
    allow_empty=True,
    bad_first="",
    summary=(
        "a configuration value is up to 4096 printable characters (tabs allowed; no "
        "line breaks, control or invisible formatting characters)"
    ),
)


def check_host_address(value: object) -> str:
    """A host address: one IPv4 or IPv6 address, returned in its canonical form."""
    rule = "a host address is one IPv4 or IPv6 address, e.g. 10.0.0.5"
    if not isinstance(value, str):
        raise NameRuleError("host address", value, "it is not text", rule)
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise NameRuleError("host address", value, "it is not an IP address", rule) from None


def is_safe_path_component(value: object) -> bool:
    """Whether ``value`` can be one component of a path under a directory of ours:
    not empty, not ``.`` or ``..``, no ``/``, no NUL or other control character, no
    invisible formatting character, not starting with ``-``, at most 255 characters."""
    return PATH_COMPONENT.is_valid(value)


def login_path_key(login: str) -> str:
    """The directory name of a per-user home (``homefs/<key>``): the login itself,
    when it is one plain path component (every login the login rule allows is). A
    login stored before the rule that is not (``..``, ``../../etc``, ``/``, a line
    break) raises :class:`NameRuleError`: that home is refused, never made at a path
    the login chooses."""
    return PATH_COMPONENT.check(login)


def is_safe_config_value(value: object) -> bool:
    """Whether ``value`` can follow ``key =`` on one line of a configuration file: text
    of at most 4096 characters with no line break, no control character (not even a
    tab), no invisible formatting character, and no blank at either end (a
    configuration parser strips them)."""
    if not isinstance(value, str) or len(value) > 4096:
        return False
    if any(char_problem(ch) is not None for ch in value):
        return False
    return value == value.strip()
