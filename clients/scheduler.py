"""Which frame to send next (real-time pacing that drops, never queues) and the sliding-window rule."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from clients.sources import Frame, FrameSource

DECISION_VERIFIED = "VERIFIED"
DECISION_PENDING = "PENDING"
DECISION_NOT_VERIFIED = "NOT_VERIFIED"


@dataclass
class FrameScheduler:
    """Picks the next frame to send and counts the frames passed over because the client was busy.

    Real time: a file or folder is replayed on the wall clock from the first pick; the frame sent is the
    one "on screen" now, and at most one frame per `min_interval`. Offline (`realtime=False`): every
    `step`-th frame, no waiting, nothing dropped, so a run is reproducible.
    """

    source: FrameSource
    realtime: bool = True
    min_interval: float = 0.0
    step: int = 1
    start: int = 0
    stop: int | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    dropped: int = 0
    _t0: float | None = None
    _last_position: int | None = None
    _last_pick: float = -math.inf

    def next(self) -> Frame | None:
        if not self.realtime:
            position = self.start if self._last_position is None else self._last_position + self.step
            return self._take(position, count_drops=False)
        if self._last_position is None:
            self._t0 = self.clock()
            self._last_pick = self._t0
            return self._take(self.start, count_drops=False)
        earliest = self._last_pick + self.min_interval
        if not self.source.live:
            assert self._t0 is not None
            earliest = max(earliest, self._t0 + (self._last_position + 1 - self.start) / self.source.fps)
        now = self.clock()
        if now < earliest:
            self.sleep(earliest - now)
            now = max(self.clock(), earliest)
        self._last_pick = now
        if self.source.live:
            position = self._last_position + 1  # the camera returns its newest frame at or after this
        else:
            assert self._t0 is not None
            position = max(self.start + int((now - self._t0) * self.source.fps), self._last_position + 1)
        return self._take(position, count_drops=True)

    def _take(self, position: int, *, count_drops: bool) -> Frame | None:
        if self.stop is not None and position >= self.stop:
            return None
        frame = self.source.get(position)
        if frame is None:
            return None
        if count_drops and self._last_position is not None:
            self.dropped += frame.position - self._last_position - 1
        self._last_position = frame.position
        return frame


# ------------------------------------------------------------------------------------ decision window


@dataclass
class SlidingWindow:
    """The seed's real-time rule: verified when at least `need` of the last `size` frames verified."""

    size: int
    need: int
    results: deque[bool] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.size < 1 or not 1 <= self.need <= self.size:
            raise ValueError("need 1 <= min_verified <= window")
        self.results = deque(self.results, maxlen=self.size)

    def push(self, verified: bool) -> str:
        self.results.append(verified)
        return self.decision

    @property
    def verified(self) -> int:
        return sum(self.results)

    @property
    def decision(self) -> str:
        if self.verified >= self.need:
            return DECISION_VERIFIED
        if self.verified + (self.size - len(self.results)) >= self.need:
            return DECISION_PENDING  # the window is not full yet and could still get there
        return DECISION_NOT_VERIFIED
