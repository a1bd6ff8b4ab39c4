"""Enrolment: POST /enroll (routes, schemas) over the domain service that judges and stores photos,
and reembed (recomputing stored embeddings after a model change)."""
