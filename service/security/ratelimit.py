"""Per-key request rate limit: a token bucket per API key name, in this process's memory.

Deliberately per process: it caps what one key can do to one replica's CPU (each verify is a CNN
run) without a database write per request; with N replicas a key gets up to N times the rate. The
per-user lockout, which must hold across replicas, lives in the database instead.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from service.errors import TooManyRequests


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, last refill time)

    def check(self, name: str) -> None:
        """Take one token for `name` or raise 429 `rate_limited` with the seconds until the next one."""
        if self.per_minute <= 0:
            return
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(name, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / self._rate))
                raise TooManyRequests(
                    "rate_limited", f"more than {self.per_minute} requests per minute with this key",
                    retry_after_s=wait,
                )  # fmt: skip
            self._buckets[name] = (tokens - 1.0, now)
