"""/v1/gradient (domain package; see its issue)."""
