"""Plain functions and reference data shared by the tests (no tests, no fixtures: see conftest)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
