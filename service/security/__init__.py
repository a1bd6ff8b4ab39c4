"""Security: API keys and scopes, verify lockout, per-key rate limit, the hash-chained audit trail,
the first admin key; routes for the audit trail and unlocking users. Each module has one job."""
