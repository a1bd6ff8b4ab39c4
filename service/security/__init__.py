"""Security of the service (issue 9): API keys and scopes, verify lockout, per-key rate limit,
the hash-chained audit trail and the web-hardening middleware. Each module has one job."""
