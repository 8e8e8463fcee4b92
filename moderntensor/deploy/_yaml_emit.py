"""A small YAML writer for the files ``testnet init --compose`` makes (no YAML library needed
at run time): block mappings and sequences, strings always double-quoted (a JSON string is a
YAML double-quoted scalar), so no value is ever re-typed by a YAML reader (``"on"``, ``"3.10"``,
``"0755"`` stay strings)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["dump"]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
"""Words a YAML 1.1 reader takes for booleans or null even as keys: always quoted."""


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"mapping keys must be strings, got {key!r}")
    plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _RESERVED
    return key if plain else json.dumps(key)


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list | tuple) and item and not _flat(item):
                out.append(f"{pad}{_key(key)}:")
                out += _lines(item, indent + 2)
            else:
                out.append(f"{pad}{_key(key)}: {_inline(item)}")
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            if isinstance(item, Mapping | list | tuple) and item and not _flat(item):
                nested = _lines(item, indent + 2)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out += nested[1:]
            else:
                out.append(f"{pad}- {_inline(item)}")
    else:
        out.append(pad + _scalar(value))
    return out


def _flat(value: Any) -> bool:
    """A short list of scalars, written on one line (a JSON array is a YAML flow sequence)."""
    return (
        isinstance(value, list | tuple)
        and all(not isinstance(v, Mapping | list | tuple) for v in value)
        and len(", ".join(_scalar(v) for v in value)) <= 80
    )


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return _scalar(value)


def dump(doc: Mapping[str, Any], header: str = "") -> str:
    """``doc`` as a YAML document, after ``header`` lines as comments."""
    comments = [f"# {line}".rstrip() for line in header.splitlines()]
    return "\n".join([*comments, *_lines(doc, 0)]) + "\n"
