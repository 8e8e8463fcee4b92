"""A strict checker of JSON-RPC results against the official execution-apis OpenRPC spec.

Loads ../shared/vectors/execution-apis (see its README): merges every ``src/schemas/*.yaml``
into one map, inlines every ``$ref`` (recursively; ``{$ref, title, description}`` become the
referenced schema), rewrites each ``pattern`` so that ``$`` is ``\\Z`` (Python's ``$`` also
matches before a final newline) and validates with JSON Schema draft 7. Strictness comes from
the spec itself: ``additionalProperties: false`` is honoured as written. Lookups are
``oneOf [null, X]``; :func:`check_result` can be told the object must exist, which drops the
null branch. ``eth_getLogs`` answers ``oneOf [hashes, logs]``, so an empty list matches both
and fails ``oneOf``; the checker validates log results against the logs branch.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.conftest import VECTORS

SPEC = VECTORS / "execution-apis" / "src"
_REF = "#/components/schemas/"


@functools.cache
def _schemas() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted((SPEC / "schemas").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for name, schema in doc.items():
            if name in merged:
                raise ValueError(f"schema {name} defined twice")
            merged[name] = schema
    return merged


def _inline(node: Any, depth: int = 0) -> Any:
    if depth > 64:
        raise ValueError("$ref nesting too deep (a cycle?)")
    if isinstance(node, list):
        return [_inline(v, depth) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith(_REF):
            raise ValueError(f"unsupported $ref {ref}")
        extra = set(node) - {"$ref", "title", "description"}
        if extra:
            raise ValueError(f"$ref with sibling keys {extra}")
        return _inline(copy.deepcopy(_schemas()[ref[len(_REF) :]]), depth + 1)
    out = {}
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str):
            out[key] = value[:-1] + r"\Z" if value.endswith("$") else value
        elif key == "properties":
            out[key] = {k: _inline(v, depth) for k, v in value.items()}
        else:
            out[key] = _inline(value, depth)
    return out


@functools.cache
def _methods() -> dict[str, dict[str, Any]]:
    methods: dict[str, dict[str, Any]] = {}
    for path in sorted((SPEC / "eth").glob("*.yaml")):
        for method in yaml.safe_load(path.read_text()):
            methods[method["name"]] = method
    return methods


@functools.cache
def result_schema(method: str) -> dict[str, Any]:
    schema = _inline(_methods()[method]["result"]["schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def named_schema(name: str) -> dict[str, Any]:
    return _inline(copy.deepcopy(_schemas()[name]))


def _drop_null(schema: dict[str, Any]) -> dict[str, Any]:
    for key in ("oneOf", "anyOf"):
        if key in schema:
            branches = [b for b in schema[key] if b.get("type") != "null"]
            if len(branches) != len(schema[key]):
                return branches[0] if len(branches) == 1 else {key: branches}
    return schema


def check_result(method: str, result: Any, *, exists: bool = False) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``result`` is what the spec allows.

    Args:
        exists: the object is known to exist, so ``null`` is not acceptable.
    """
    schema = result_schema(method)
    if method == "eth_getLogs":
        schema = {"type": "array", "items": named_schema("Log")}
    if exists:
        schema = _drop_null(schema)
    jsonschema.Draft7Validator(schema).validate(result)


def spec_methods() -> set[str]:
    return set(_methods())


def spec_dir() -> Path:
    return SPEC
