"""Test-only crash injection: `crash_point(name)` kills the process on the spot when asked to.

The crash-safety tests run a real `faceverify serve` and need it to die (like kill -9: no cleanup,
no `finally`, no flush) at a chosen step of an enrolment or delete. The hook is inert unless the
environment variable FACEVERIFY_TEST_CRASH_AT is set, which no deployment does:

* `FACEVERIFY_TEST_CRASH_AT=after_commit` dies at the point named `after_commit`;
* `FACEVERIFY_TEST_CRASH_AT=@/path/file` reads the point name from that file at each call, so one
  test can move the crash point between restarts without changing the server's environment.
"""

from __future__ import annotations

import os
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
    """Exit immediately (os._exit: no cleanup) if the test armed this point; otherwise nothing."""
    if _armed() == name:
        os._exit(EXIT_CODE)
