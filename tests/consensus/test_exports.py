"""One public surface (STYLE rule 10): every name exported once, and it exists."""

from __future__ import annotations

import moderntensor.consensus as consensus


def test_exports_are_unique_and_resolve() -> None:
    names = consensus.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(consensus, name) is not None


def test_docstring_is_the_spec() -> None:
    doc = consensus.__doc__ or ""
    for heading in ("step by step", "Deviations from the Simplex paper", "Safety argument"):
        assert heading in doc
