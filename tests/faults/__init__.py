"""Fault suite: real processes on loopback, one fault per scenario, jobs counted.

``python -m tests.faults [--fast] [--only NAME[,NAME]] [--json out.json]`` runs the scenarios
one after the other and prints a table; ``python -m pytest tests/faults -m faults`` runs the
same ones as tests (the ``fast`` ones by default, the others carry ``faults_full``, which
pyproject's addopts deselects). See docs/RELIABILITY.md.
"""
