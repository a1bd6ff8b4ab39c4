"""The client's exceptions: what went wrong, so the CLI can map it to an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_NOT_REACHED = 1
EXIT_USAGE = 2
EXIT_SERVER_UNAVAILABLE = 3
EXIT_REJECTED = 4
EXIT_INTERRUPTED = 130


class SourceError(Exception):
    """The frame source cannot be opened or read (exit 2)."""


class TransientError(Exception):
    """A failure that may go away by itself: connection refused, timeout, 5xx, 429."""


class ServerUnavailable(Exception):
    """Retries are exhausted (exit 3)."""


class RequestRejected(Exception):
    """The server answered with a 4xx that resending cannot fix (exit 4)."""
