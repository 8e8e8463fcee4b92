"""Headless Chromium for the page tests (faucet, explorer): Playwright for Python driving
Debian's chromium (``apt-get install chromium``; Playwright's own browser download is never
used). A module that imports this skips, with the reason, when either is missing; CI installs
both. Screenshots go to ``$TEST_ARTIFACTS`` (default ``test-artifacts/``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", "test-artifacts"))

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)",
        allow_module_level=True,
    )


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a test module wraps it in its ``browser`` fixture)."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()
