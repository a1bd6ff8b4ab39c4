"""Verification: POST /verify (routes, schemas) over the domain service that scores a probe, or a
liveness burst, against a user's stored embeddings with the vote rule of faceverify.decision."""
