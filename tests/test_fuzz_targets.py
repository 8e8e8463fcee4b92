"""The fuzz targets run (briefly) in the suite, so they never rot."""

from __future__ import annotations

from fuzz.targets import fuzz_decoders, fuzz_handshake, fuzz_verify_proof, fuzz_wire


def test_decoders_target() -> None:
    fuzz_decoders()


def test_proof_target() -> None:
    fuzz_verify_proof()


def test_wire_target() -> None:
    fuzz_wire()


def test_handshake_target() -> None:
    fuzz_handshake()
