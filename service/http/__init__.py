"""HTTP plumbing shared by every route: problem bodies, middleware, dependencies, health, and the
one way routes read bodies and answer (bodies, responses)."""
