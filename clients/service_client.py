"""`ServiceClient`: the faceverify HTTP API as Python calls (enroll, verify, challenge, verify_liveness).

No argparse and no printing here, so a kiosk application, a script or a test can reuse it. Each call
is ONE attempt: transient failures (connection refused, timeout, HTTP 5xx, 429, a concurrent-change
409) raise `TransientError`, every other answer is returned as the `httpx.Response` for the caller
to interpret (`reason_of`, `detail_of`). Retrying is the caller's choice (`RetryPolicy`), because a
live client should retry with a fresh frame, not the stale one.

Authentication: the `X-API-Key` header, from the `api_key` argument or `$FACEVERIFY_API_KEY`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from clients.errors import ServerUnavailable, TransientError

DEFAULT_URL = "http://127.0.0.1:8000"
API_KEY_ENV = "FACEVERIFY_API_KEY"

# 422 reasons that concern the request, not the frame: resending other frames cannot help.
REQUEST_ERRORS = frozenset({"invalid_user_id", "missing_field", "invalid_request", "threshold_below_floor"})


@dataclass
class RetryPolicy:
    """Exponential backoff over *consecutive* failures; one success resets it."""

    retries: int = 5
    base: float = 0.5
    cap: float = 8.0
    failures: int = 0

    def failed(self, reason: str) -> float:
        """Record a failure; return the delay before the next attempt, or raise when exhausted."""
        self.failures += 1
        if self.failures > self.retries:
            raise ServerUnavailable(f"{reason}; gave up after {self.retries} retries")
        return min(self.base * 2 ** (self.failures - 1), self.cap)

    def succeeded(self) -> None:
        self.failures = 0


def detail_of(response: httpx.Response) -> str:
    """The human part of an answer (`detail`), one line."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)[:300]
    return json.dumps(body)[:300]


def reason_of(response: httpx.Response) -> str | None:
    """The service's stable error code (`{"detail": ..., "reason": ...}`), if the body has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else None


Files = list[tuple[str, tuple[str, bytes, str]]]


class ServiceClient:
    """One HTTP connection pool to a faceverify service. Use as a context manager or call `close`."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 10.0, api_key: str | None = None) -> None:
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers=headers,
        )

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    @property
    def base_url(self) -> str:
        return str(self.http.base_url)

    def post(
        self, path: str, data: dict[str, str], files: Files | None = None, timeout: float | None = None
    ) -> httpx.Response:
        """One attempt. Transient failures become `TransientError` with a one-line reason."""
        base = self.http.base_url
        limit = httpx.Timeout(timeout, connect=min(timeout, 5.0)) if timeout else self.http.timeout
        try:
            response = self.http.post(path, data=data, files=files, timeout=limit)
        except httpx.TimeoutException:
            raise TransientError(f"no answer from {base} within {limit.read} s") from None
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach {base} ({type(exc).__name__}: {exc})") from None
        if response.status_code == 409 and reason_of(response) == "conflict":  # concurrent change: resend
            raise TransientError(f"{base}{path} answered HTTP 409: {detail_of(response)}")
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"{base}{path} answered HTTP {response.status_code}: {detail_of(response)}")
        return response

    def enroll(self, user_id: str, images: Sequence[tuple[str, bytes]]) -> httpx.Response:
        """POST /enroll with (file name, JPEG bytes) pairs."""
        files: Files = [("images", (name, data, "image/jpeg")) for name, data in images]
        return self.post("/enroll", {"user_id": user_id}, files)

    def verify(self, user_id: str, jpeg: bytes, **form: Any) -> httpx.Response:
        """POST /verify with one frame."""
        data = {"user_id": user_id, **{k: str(v) for k, v in form.items()}}
        return self.post("/verify", data, [("image", ("frame.jpg", jpeg, "image/jpeg"))])

    def challenge(self, user_id: str) -> httpx.Response:
        """POST /liveness/challenge: 201 `{challenge_id, steps, expires_in_s}`."""
        return self.post("/liveness/challenge", {"user_id": user_id})

    def verify_liveness(
        self, user_id: str, challenge_id: str, jpegs: Sequence[bytes], timeout: float | None = None
    ) -> httpx.Response:
        """POST /verify with a challenge and its burst of frames, in capture order. The server runs the
        pipeline on every frame, so a burst may need a longer `timeout` than one frame does."""
        files: Files = [
            ("frames", (f"frame_{i:03d}.jpg", data, "image/jpeg")) for i, data in enumerate(jpegs)
        ]
        return self.post("/verify", {"user_id": user_id, "challenge_id": challenge_id}, files, timeout)
