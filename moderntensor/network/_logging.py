"""Structured log lines: the facts go in ``extra={"fields": {...}}``, which the node's
formatters (``moderntensor.node._logging``) print as ``key=value`` or JSON keys."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["event"]


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log ``name`` with structured fields."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})
