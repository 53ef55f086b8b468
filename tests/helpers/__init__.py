"""Shared test helpers: plain functions and reference data (no tests here)."""
