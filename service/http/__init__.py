"""HTTP plumbing shared by every capability's routes: dependencies (keys, sessions, the engine), the
one error -> status mapping, upload reading, the middleware and /health, /ready."""
