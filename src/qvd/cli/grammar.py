"""The ``qa`` command grammar (reference §5.8), parsed into a :class:`Command`.

    qa <object> [<filters>] <verb> [<arguments>] [order [asc|desc] <field>, …]

Filters: ``k=v``, ``k!=v``, ``k<v``, ``k>v``, ``k<=v``, ``k>=v``, ``k~pattern`` (SQL
LIKE, ``%`` wildcards), ``k=[a,b,c]`` (any of), ``k=[a:b]`` (range), joined by ``,``
(and) and ``;`` (or), negated by ``!``, grouped with parentheses; a bare word means
``name=<word>``. Quote values with blanks. They compile to the QVD filter JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OBJECTS", "VERBS", "VERBS_OF", "Command", "GrammarError", "parse", "tokenize"]

OBJECTS = (
    "vm", "user", "host", "osf", "di", "tenant", "config", "admin", "role", "acl", "log",
    "property", "policy", "session",
)  # fmt: skip
VERBS = (
    "get", "new", "set", "del", "block", "unblock", "start", "stop", "disconnect", "tag",
    "untag", "assign", "unassign", "can", "default", "ssl",
)  # fmt: skip
VERBS_OF: dict[str, tuple[str, ...]] = {
    "vm": ("get", "new", "set", "del", "block", "unblock", "start", "stop", "disconnect"),
    "user": ("get", "new", "set", "del", "block", "unblock"),
    "host": ("get", "new", "set", "del", "block", "unblock"),
    "osf": ("get", "new", "set", "del"),
    "di": ("get", "new", "set", "del", "block", "unblock", "tag", "untag"),
    "tenant": ("get", "new", "set", "del", "block", "unblock"),
    "config": ("get", "set", "default", "ssl"),
    "admin": ("get", "new", "set", "del", "assign", "unassign", "can"),
    "role": ("get", "new", "set", "del", "assign", "unassign", "can"),
    "acl": ("get",),
    "log": ("get",),
    "property": ("get", "new", "set", "del", "assign", "unassign"),
    "policy": ("get", "new", "set", "del"),
    "session": ("get",),
}
_WITH_ASSIGNMENTS = ("new", "set", "ssl")
_OPS = ("!=", "<=", ">=", "=", "<", ">", "~")
_ALIASES: dict[str, dict[str, str]] = {
    "vm": {"user": "user_name", "osf": "osf_name", "tag": "di_tag", "host": "host_name",
           "di": "di_name", "tenant": "tenant_name", "di_in_use": "di_name_in_use"},
    "di": {"name": "disk_image", "osf": "osf_name", "tenant": "tenant_name"},
    "host": {"ip_address": "address"},
    "config": {"default": "default_value", "value": "operative_value"},
    "user": {"tenant": "tenant_name"},
    "osf": {"tenant": "tenant_name"},
    "admin": {"tenant": "tenant_name"},
    "role": {"tenant": "tenant_name"},
    "log": {"admin": "administrator_name", "admin_name": "administrator_name",
            "object": "qvd_object"},
    "property": {"name": "key"},
    "policy": {"tenant": "tenant_name", "osf": "osf_name"},
    "session": {"user": "login", "vm": "vm_name", "host": "host_name",
                "tenant": "tenant_name", "address": "client_address", "from": "client_address"},
}  # fmt: skip
_DEFAULT_NAME = {
    "config": "key", "property": "key", "di": "disk_image", "log": "object_name",
    "session": "login",
}  # fmt: skip
_TOKEN = re.compile(r'"([^"]*)"|\'([^\']*)\'|(!=|<=|>=|[=<>~,;!()\[\]:])|([^\s=<>~,;!()\[\]:"\']+)')


class GrammarError(ValueError):
    """A command line that does not follow the grammar; the message says where."""


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    quoted: bool = False

    @property
    def punct(self) -> bool:
        return not self.quoted and bool(re.fullmatch(r"!=|<=|>=|[=<>~,;!()\[\]:]", self.text))


@dataclass(slots=True, kw_only=True)
class Command:
    obj: str
    verb: str
    filters: dict[str, Any] | None = None
    fields: list[str] = field(default_factory=list)
    arguments: dict[str, Any] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    descending: bool = False


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        m = _TOKEN.match(text, pos)
        if m is None:
            raise GrammarError(f"unexpected character {text[pos]!r} at {pos}")
        if m.group(1) is not None or m.group(2) is not None:
            tokens.append(Token(m.group(1) if m.group(1) is not None else m.group(2), True))
        else:
            tokens.append(Token(m.group(0)))
        pos = m.end()
    return tokens


def alias(obj: str, name: str) -> str:
    return _ALIASES.get(obj, {}).get(name, name)


class _Parser:
    def __init__(self, obj: str, tokens: list[Token]) -> None:
        self.obj = obj
        self.tokens = tokens
        self.i = 0

    def peek(self, ahead: int = 0) -> Token | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise GrammarError("the command ends too early")
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text or tok.quoted:
            raise GrammarError(f"expected {text!r}, found {tok.text!r}")

    def word(self) -> str:
        tok = self.take()
        if tok.punct:
            raise GrammarError(f"expected a word or value, found {tok.text!r}")
        return tok.text

    # filters -------------------------------------------------------------------------
    def or_expr(self) -> dict[str, Any]:
        parts = [self.and_expr()]
        while (t := self.peek()) is not None and t.text == ";" and not t.quoted:
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else {"-or": parts}

    def and_expr(self) -> dict[str, Any]:
        parts = [self.unary()]
        while (t := self.peek()) is not None and t.text == "," and not t.quoted:
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else {"-and": parts}

    def unary(self) -> dict[str, Any]:
        tok = self.peek()
        if tok is not None and not tok.quoted and tok.text == "!":
            self.take()
            return {"-not": self.unary()}
        if tok is not None and not tok.quoted and tok.text == "(":
            self.take()
            inner = self.or_expr()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> dict[str, Any]:
        key = self.word()
        op = self.peek()
        if op is None or op.quoted or op.text not in _OPS:
            return {_DEFAULT_NAME.get(self.obj, "name"): {"=": key}}
        self.take()
        name = alias(self.obj, key)
        value = self.value()
        if isinstance(value, tuple):
            low, high = value
            if op.text != "=":
                raise GrammarError(f"a range [{low}:{high}] goes with '=', not {op.text!r}")
            return {name: {">=": low, "<=": high}}
        return {name: {op.text: value}}

    def value(self) -> Any:
        tok = self.peek()
        if tok is not None and not tok.quoted and tok.text == "[":
            self.take()
            items = [self.item()]
            if (t := self.peek()) is not None and t.text == ":" and not t.quoted:
                self.take()
                high = self.word()
                self.expect("]")
                return (items[0], high)
            while (t := self.peek()) is not None and t.text == "," and not t.quoted:
                self.take()
                items.append(self.item())
            self.expect("]")
            return items
        return self.word()

    def item(self) -> str:
        """A list item: words up to the next ``,``, ``:`` or ``]``, joined by a blank
        (``roles=["VMs Reader"]`` reaches us without its quotes)."""
        words = [self.word()]
        while (t := self.peek()) is not None and not t.punct:
            words.append(self.take().text)
        return " ".join(words)

    # verbs ---------------------------------------------------------------------------
    def word_list(self) -> list[str]:
        out: list[str] = []
        while (t := self.peek()) is not None and not (t.text == "order" and not t.quoted):
            if t.text == "," and not t.quoted:
                self.take()
                continue
            out.append(self.word())
        return out

    def name_list(self) -> list[str]:
        """Names separated by ``,``; the words of one name are joined by a blank
        (``assign role VMs Reader, Users Reader``)."""
        out: list[str] = []
        while self.peek() is not None:
            out.append(self.item())
            if (t := self.peek()) is not None and t.text == "," and not t.quoted:
                self.take()
        return out

    def assignments(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while self.peek() is not None:
            key = self.word()
            self.expect("=")
            out[key] = self.value()
            if (t := self.peek()) is not None and t.text == "," and not t.quoted:
                self.take()
        return out

    def order(self, command: Command) -> None:
        tok = self.peek()
        if tok is None:
            return
        if tok.text != "order":
            raise GrammarError(f"unexpected {tok.text!r} after the command")
        self.take()
        if (t := self.peek()) is not None and t.text in ("asc", "desc"):
            command.descending = self.take().text == "desc"
        command.order = [alias(self.obj, f) for f in self.word_list()]
        if not command.order:
            raise GrammarError("'order' needs at least one field")


def _verb_at(obj: str, tokens: list[Token]) -> int:
    """Where the verb is: the first of the object's verbs that is not a value (a VM
    named ``get`` is ``name=get``); a word that is another object's verb is named in
    the error."""
    other: str | None = None
    for i, tok in enumerate(tokens):
        if tok.quoted or tok.text not in VERBS:
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        prev = tokens[i - 1] if i > 0 else None
        if (nxt is not None and nxt.text in _OPS) or (prev is not None and prev.text in _OPS):
            continue
        if tok.text in VERBS_OF[obj]:
            return i
        other = other or tok.text
    verbs = ", ".join(VERBS_OF[obj])
    if other is not None:
        raise GrammarError(f"'{other}' is not a verb of {obj} (its verbs: {verbs})")
    raise GrammarError(f"no verb found (the verbs of {obj}: {verbs})")


def parse(obj: str, words: list[str]) -> Command:
    """A :class:`Command` from the object and the rest of the command line."""
    if obj not in OBJECTS:
        raise GrammarError(f"unknown object {obj!r} (one of: {', '.join(OBJECTS)})")
    tokens = tokenize(" ".join(_quote(w) for w in words))
    at = _verb_at(obj, tokens)
    head = _Parser(obj, tokens[:at])
    filters = head.or_expr() if tokens[:at] else None
    if head.peek() is not None:
        raise GrammarError(f"unexpected {head.peek().text!r} in the filters")  # type: ignore[union-attr]
    command = Command(obj=obj, verb=tokens[at].text, filters=filters)
    tail = _Parser(obj, tokens[at + 1 :])
    if command.verb == "get":
        command.fields = [alias(obj, f) for f in tail.word_list()]
        tail.order(command)
    elif command.verb in _WITH_ASSIGNMENTS:
        command.arguments = tail.assignments()
    elif command.verb in ("assign", "unassign"):
        kind = tail.peek()
        if obj != "property" and kind is not None and kind.text in ("role", "acl"):
            command.words.append(tail.take().text)
        command.words += tail.name_list()
    else:
        command.words = tail.word_list()
        tail.order(command)
    return command


def _quote(word: str) -> str:
    """A shell word with blanks is either a whole expression the user quoted
    (``'a=1, b~%x%'``) or one value with blanks (``name=a b`` from ``name="a b"``)."""
    if not any(c.isspace() for c in word) or word.startswith(("'", '"')):
        return word
    m = re.match(r"^([^\s=<>~,;!()\[\]:\"']+)(!=|<=|>=|=|<|>|~)(.*)$", word, re.S)
    if m is None:
        return f'"{word}"' if not re.search(r"[=<>~,;!()]", word) else word
    key, op, value = m.groups()
    if re.search(r"[=<>~,;!()\[\]]", value):
        return word  # an expression: tokenize it as it is
    return f'{key}{op}"{value}"'
