"""The faceverify service, one package per capability.

enrolment/, verification/, liveness/, users/, security/ each hold their routes, schemas and domain
service; http/ is the shared HTTP plumbing, app.py assembles the FastAPI app, cli/ the command line;
faces/ wraps the faceverify library, storage/ the database and encrypted photo store, runtime/ the
settings, logs, metrics and server. Imports only go downward (docs/architecture.md; enforced by
import-linter's contracts in pyproject.toml).
"""
