"""The fuzz targets run (briefly) in the suite, so they never rot."""

from __future__ import annotations

import re

from fuzz.targets import fuzz_decoders, fuzz_handshake, fuzz_verify_proof, fuzz_wire


def test_decoders_target() -> None:
    fuzz_decoders()


def test_proof_target() -> None:
    fuzz_verify_proof()


def test_wire_target() -> None:
    fuzz_wire()


def test_handshake_target() -> None:
    fuzz_handshake()


def test_consensus_target_runs_a_few_examples() -> None:
    from fuzz.targets import fuzz_consensus

    fuzz_consensus(max_examples=2)


def test_simulation_target_and_the_bounded_runner() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "fuzz", "--seconds", "1", "wire", "simulation"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("wire: ") and "examples ok" in lines[0]
    # at least one whole simulation, however fast the machine (a bound in time, not in count)
    sims = re.fullmatch(r"simulation: (\d+) examples ok in [\d.]+ s", lines[1])
    assert sims is not None and int(sims.group(1)) >= 1, lines
