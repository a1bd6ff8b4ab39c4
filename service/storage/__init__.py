"""Storage: the database (engine, sessions, migrations), its tables, the encrypted photo store and
key ring, per-user locks, crash recovery and key rotation. Knows nothing of HTTP or faces."""
