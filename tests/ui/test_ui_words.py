"""The kiosk's words for the service's codes (service/ui/static/js/words.js), run in Node: a liveness
step or reason the service adds later (issue 20's blink / open_mouth, or one not yet named) still
shows, humanised, instead of breaking the challenge display."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

WORDS = Path(__file__).resolve().parents[2] / "service" / "ui" / "static" / "js" / "words.js"


def run_words(expression: str) -> object:
    node = shutil.which("node")
    assert node, "node is missing (apt-get install npm; .ci/run installs it)"
    script = f"import * as w from {json.dumps(WORDS.as_uri())}; console.log(JSON.stringify({expression}));"
    result = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(result.stdout)


def test_known_and_unknown_steps() -> None:
    shown = run_words("['turn_left', 'look_up', 'blink', 'open_mouth', 'wiggle_ears'].map(w.stepDisplay)")
    assert shown[0] == {"arrow": "←", "words": "Turn your head to your left, then back"}
    assert shown[1]["arrow"] == "↑"
    assert shown[2]["words"].startswith("Close your eyes") and shown[3]["words"].startswith("Open your mouth")
    assert shown[4] == {"arrow": "•", "words": "Wiggle ears"}  # a step the table does not know yet


def test_reasons_in_words_with_a_fallback() -> None:
    words = run_words(
        "[w.livenessWords('depth:planar_motion'), w.livenessWords('steps:blink_missing'),"
        " w.reasonWords('locked_out'), w.reasonWords('some_new_code'), w.farLabel(1e-4)]"
    )
    assert words == [
        "The face moved like a flat picture, not a head",
        "The steps check failed: blink missing",
        "Too many failed attempts for this user: try again later",
        "Some new code",
        "1 in 10,000",
    ]
