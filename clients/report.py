"""What the client prints: one line per event (key=value, or JSON lines) and the run's summary."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from clients.scheduler import DECISION_PENDING


@dataclass
class Stats:
    mode: str
    requests: int = 0
    answered: int = 0
    failed_attempts: int = 0
    frames_verified: int = 0
    no_face: int = 0
    enrolled: int = 0
    rejected: int = 0
    decision: str = DECISION_PENDING
    ever_verified: bool = False
    dropped: int = 0
    liveness_passed: bool | None = None
    liveness_reason: str | None = None
    started: float = field(default_factory=time.monotonic)

    def summary(self, outcome: str) -> dict[str, Any]:
        common: dict[str, Any] = {
            "event": "summary",
            "mode": self.mode,
            "outcome": outcome,
            "requests": self.requests,
            "answered": self.answered,
            "failed_attempts": self.failed_attempts,
            "dropped": self.dropped,
            "elapsed_s": round(time.monotonic() - self.started, 2),
        }
        if self.mode == "liveness":
            common.update(
                verified=self.ever_verified,
                liveness_passed=self.liveness_passed,
                liveness_reason=self.liveness_reason,
            )
        elif self.mode == "verify":
            common.update(
                frames_verified=self.frames_verified,
                no_face=self.no_face,
                decision=self.decision,
                ever_verified=self.ever_verified,
            )
        else:
            common.update(enrolled=self.enrolled, rejected=self.rejected)
        return common


class Reporter:
    """One line per event on stdout: `key=value` for people, or JSON lines with `--json` for scripts."""

    def __init__(self, as_json: bool, out: TextIO, err: TextIO) -> None:
        self.as_json = as_json
        self.out = out
        self.err = err

    def event(self, record: dict[str, Any]) -> None:
        if self.as_json:
            line = json.dumps(record)
        else:
            parts = []
            for key, value in record.items():
                if value is None:
                    continue
                if isinstance(value, bool):
                    value = "yes" if value else "no"
                elif isinstance(value, float):
                    value = f"{value:.3f}"
                elif isinstance(value, list | tuple):
                    value = "[" + ",".join(str(v) for v in value) + "]"
                parts.append(f"{key}={value}")
            line = " ".join(parts)
        print(line, file=self.out, flush=True)

    def warn(self, message: str) -> None:
        print(f"webcam: {message}", file=self.err, flush=True)
