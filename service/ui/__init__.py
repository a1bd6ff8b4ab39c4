"""The browser UI: static pages under /ui/ (kiosk, compare, console), served by the service itself.

Same origin as the API, so the pages need no CORS and send the API key only to this service. The
files are plain HTML, CSS and ES modules (service/ui/static: no build step, nothing from a CDN,
nothing inline), public because they hold no data: every call they make carries the key typed in
the page. Their headers (a strict CSP of their own, camera permission) are set by
service.http.middleware; `FACEVERIFY_UI_ENABLED=false` turns the UI off.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"


def mount_ui(app: FastAPI, prefix: str) -> None:
    """Serve the pages at `prefix`/ (its index.html for the folder itself)."""
    app.mount(prefix, StaticFiles(directory=STATIC_DIR, html=True), name="ui")
