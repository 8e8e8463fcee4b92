"""How a method is declared: its positional parameters with their parsers, and its handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Method", "Param"]


@attrs.frozen(slots=True)
class Param:
    """One positional argument: ``parse`` raises ValueError naming the problem."""

    name: str
    parse: Callable[[Any], Any]
    required: bool = True
    default: Any = None


@attrs.frozen(slots=True)
class Method:
    """A JSON-RPC method: ``handler(*parsed_args)`` returns a JSON-ready result."""

    handler: Callable[..., Any]
    params: tuple[Param, ...] = ()
