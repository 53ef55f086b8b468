"""HTTP plumbing shared by every route: problem bodies, middleware, dependencies, health."""
