"""Users: list, show, delete users and images (routes, schemas, and the domain service)."""
