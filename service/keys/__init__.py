"""API keys over REST (GET/POST /keys, DELETE /keys/{name}, GET /keys/me); domain: service.security.keys."""
