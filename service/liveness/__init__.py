"""Liveness: issuing challenges (challenges.py, POST /liveness/challenge) and judging a burst of
frames against one (service.py)."""
