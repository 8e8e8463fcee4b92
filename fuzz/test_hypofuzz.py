"""The fuzz targets under pytest's names, for HypoFuzz: ``pip install hypofuzz`` then
``hypothesis fuzz -- fuzz/test_hypofuzz.py`` runs them without a bound (the suite's
``testpaths`` is ``tests``, so a plain ``pytest`` does not collect this file)."""

from __future__ import annotations

from fuzz.targets import (
    fuzz_decoders,
    fuzz_handshake,
    fuzz_simulation,
    fuzz_verify_proof,
    fuzz_wire,
)

test_decoders = fuzz_decoders
test_proof = fuzz_verify_proof
test_wire = fuzz_wire
test_handshake = fuzz_handshake
test_simulation = fuzz_simulation
