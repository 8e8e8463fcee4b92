"""A small YAML writer for the Kubernetes manifests (the package has no YAML dependency).

It writes mappings, sequences, strings, integers, booleans and null, which is all a manifest
holds. A string is written plain only when YAML would read it back as the same string (so
``"8545"``, ``"true"`` or ``"1Gi"`` are quoted); other single-line strings are double-quoted
(YAML double-quoted, non-printable characters escaped); multi-line ones are literal blocks.
The tests read every file back with PyYAML and compare.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["dump_yaml"]

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*\Z")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in _RESERVED:
            return value
        return _quote(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _printable(char: str) -> bool:
    """Characters a literal block may hold as they are (YAML 1.1's printable set, less the
    line breaks and the byte order mark that would change or end the block)."""
    code = ord(char)
    return 0x20 <= code < 0x7F or (code >= 0xA0 and char not in "\u2028\u2029\ufeff")


def _quote(value: str) -> str:
    """A YAML double-quoted scalar: printable characters as they are, the rest escaped."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif _printable(char):
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out) + '"'


def _is_block(value: Any) -> bool:
    return (
        isinstance(value, str)
        and "\n" in value
        and not value[:1].isspace()
        and all(c == "\n" or _printable(c) for c in value)
    )


def _literal(value: str, indent: int) -> list[str]:
    head = "|" if value.endswith("\n") and not value.endswith("\n\n") else "|-"
    body = value[:-1] if head == "|" else value
    if body.endswith("\n") or any(line[-1:] == " " for line in body.split("\n")):
        return [_quote(value)]  # trailing blank lines or spaces: quoted, kept exact
    pad = " " * indent
    return [head] + [pad + line if line else "" for line in body.split("\n")]


def _lines(value: Any, indent: int) -> list[str]:
    """The lines of a mapping or sequence at ``indent`` spaces."""
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            out += _entry(f"{pad}{_scalar(str(key))}:", item, indent + 2)
    else:
        for item in value:
            if isinstance(item, Mapping) and item:
                nested = _lines(item, indent + 2)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out += nested[1:]
            else:
                out += _entry(f"{pad}-", item, indent + 2)
    return out


def _entry(prefix: str, item: Any, indent: int) -> list[str]:
    if isinstance(item, Mapping | list | tuple) and item:
        return [prefix, *_lines(item, indent)]
    if isinstance(item, Mapping):
        return [f"{prefix} {{}}"]
    if isinstance(item, list | tuple):
        return [f"{prefix} []"]
    if _is_block(item):
        first, *rest = _literal(item, indent)
        return [f"{prefix} {first}", *rest]
    return [f"{prefix} {_scalar(item)}"]


def dump_yaml(documents: Sequence[Mapping[str, Any]], header: str = "") -> str:
    """YAML text for ``documents`` (separated by ``---``), after ``header`` as ``#`` comments."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    for i, doc in enumerate(documents):
        if i:
            out.append("---")
        out += _lines(doc, 0)
    return "\n".join(out) + "\n"
