"""Fixtures for the browser tests: a live `faceverify serve` (release model, SQLite), Debian's
Chromium driven by Selenium, headless, whose camera plays a real clip, and an axe-core check.

* `camera_clip`: a .y4m made at test time with ffmpeg from ../shared/data/frames/short_hamilton_clip
  (the performer's close-ups, frames 100-239), played by Chromium as the webcam
  (`--use-file-for-fake-video-capture`, looped).
* `ui_service`: the service as a real process on a free loopback port, one per module.
* `browser`: a Chromium session (/usr/bin/chromium + /usr/bin/chromedriver: no browser download),
  one per module; on a failed test the page is saved as a PNG under runs/ui-failures/.
The page helpers (sign in, record the page's calls, axe-core) are in ui_pages.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # live_server.py

FRAMES = REPO.parent / "shared" / "data" / "frames" / "short_hamilton_clip" / "frames"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FAILURES = REPO / "runs" / "ui-failures"
CLIP_FIRST, CLIP_FRAMES = 100, 140  # the performer facing the camera, singing (about 4.7 s at 30 fps)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so the browser fixture knows a test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def camera_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not FRAMES.is_dir():
        pytest.fail(f"real frames not found at {FRAMES} (../shared/data relative to the repo)")
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is missing (apt-get install ffmpeg; .ci/run installs it)"
    clip = tmp_path_factory.mktemp("camera") / "clip.y4m"
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-y", "-framerate", "30", "-start_number", str(CLIP_FIRST),
         "-i", str(FRAMES / "frame_%04d.jpg"), "-frames:v", str(CLIP_FRAMES), "-pix_fmt", "yuv420p",
         str(clip)],
        check=True, timeout=120,
    )  # fmt: skip
    return clip


@pytest.fixture(scope="module")
def ui_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from live_server import release_model_dir, start_service, stop_service, wait_ready

    tmp = tmp_path_factory.mktemp("ui_service")
    service = start_service(
        tmp,
        {
            "FACEVERIFY_DATA_DIR": str(tmp / "data"),
            "FACEVERIFY_DATABASE_URL": f"sqlite:///{tmp / 'faceverify.db'}",
            "FACEVERIFY_MODEL_DIR": str(release_model_dir()),
            "FACEVERIFY_TF_THREADS": "2",
            "PYTHONPATH": str(REPO),  # this checkout's code, whatever the venv was installed from
        },
        name="ui",
    )
    wait_ready(service)
    try:
        yield service
    finally:
        stop_service(service)


@pytest.fixture(scope="module")
def driver(camera_clip: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for tool in (CHROMIUM, CHROMEDRIVER):
        assert tool.is_file(), f"{tool} is missing (apt-get install chromium chromium-driver; .ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera_clip}",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_script_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def browser(driver: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The module's Chromium for one test; a failed test leaves a screenshot and the console log."""
    yield driver
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        FAILURES.mkdir(parents=True, exist_ok=True)
        shot = FAILURES / f"{request.node.name}.png"
        driver.save_screenshot(str(shot))
        console = "\n".join(str(entry) for entry in driver.get_log("browser"))
        (FAILURES / f"{request.node.name}.log").write_text(console)
        print(f"screenshot of the failed page: {shot}")
