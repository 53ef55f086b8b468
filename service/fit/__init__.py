"""/v1/fit/line (domain package; see its issue)."""
