"""Alembic migrations of the faceverify schema (a package so it ships with `pip install`)."""
