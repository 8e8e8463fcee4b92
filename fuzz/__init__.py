"""Fuzz targets: every decoder that reads bytes from outside must be total.

Run them all with many examples: ``python -m fuzz [--examples N] [TARGET ...]``; or under
HypoFuzz (``hypothesis fuzz fuzz/targets.py``), which finds the same test functions.
"""
