"""/v1/minimize (domain package; see its issue)."""
