"""Runtime plumbing every layer may use: settings, logging, metrics, admission control, the uvicorn
server and crash points for tests. Imports nothing else of the service."""
