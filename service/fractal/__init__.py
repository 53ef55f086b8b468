"""/v1/fractal (domain package; see its issue)."""
