"""Test-only fault injection at named points of an enrolment or delete: crash, or pause.

The crash-safety tests run a real `faceverify serve` and need it to die (like kill -9: no cleanup,
no `finally`, no flush) at a chosen step of an enrolment or delete. The hook is inert unless the
environment variable FACEVERIFY_TEST_CRASH_AT is set, which no deployment does:

* `FACEVERIFY_TEST_CRASH_AT=after_commit` dies at the point named `after_commit`;
* `FACEVERIFY_TEST_CRASH_AT=@/path/file` reads the point name from that file at each call, so one
  test can move the crash point between restarts without changing the server's environment.

In-process tests can also install a hook (`installed_hook`) that is called with the name of every
point passed: a hook that blocks at a point pauses that request there, so a test can interleave two
requests deterministically (an enrolment held inside its locked transaction while a DELETE of the
same user runs). No deployment installs one; the cost is one global read per point.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "FACEVERIFY_TEST_CRASH_AT"
EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL

# Every point the code calls, in the order an enrolment (then a delete) passes them.
ENROL_POINTS = (
    "before_lock",
    "after_rows_flushed",
    "after_temp_write",
    "after_first_publish",
    "before_commit",
    "after_commit",
)
DELETE_POINTS = ("delete_after_commit",)

PointHook = Callable[[str], None]
_hook: PointHook | None = None


def _armed() -> str | None:
    value = os.environ.get(ENV)
    if not value:
        return None
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text().strip() or None
        except OSError:
            return None
    return value


def crash_point(name: str) -> None:
    """Call the test hook, if one is installed; then exit immediately (os._exit: no cleanup) if
    the test armed this point. Otherwise nothing."""
    hook = _hook
    if hook is not None:
        hook(name)
    if _armed() == name:
        os._exit(EXIT_CODE)


@contextmanager
def installed_hook(hook: PointHook) -> Iterator[None]:
    """Test-only: call `hook(name)` at every point while the block runs (one hook at a time)."""
    global _hook
    if _hook is not None:
        raise RuntimeError("a crash-point hook is already installed")
    _hook = hook
    try:
        yield
    finally:
        _hook = None
