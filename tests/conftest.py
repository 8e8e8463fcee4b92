"""Shared test settings: Hypothesis profiles (HYPOTHESIS_PROFILE=ci by default, dev is quicker)."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("fuzz", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"
if not VECTORS.is_dir():  # a checkout elsewhere can point at the vectors explicitly
    VECTORS = Path(os.environ.get("MODERNTENSOR_VECTORS", "../shared/vectors")).resolve()
