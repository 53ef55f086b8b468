"""/v1/pyhf (domain package; see its issue)."""
