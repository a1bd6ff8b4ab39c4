"""Audit: GET /audit (routes, schemas) over the hash-chained trail of service.security.audit."""
