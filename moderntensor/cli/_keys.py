"""Placeholder: filled in by its owner."""

from __future__ import annotations

import argparse
from typing import Any


def register(groups: Any) -> None:
    del groups


def _unused(args: argparse.Namespace) -> int:
    return 0
