"""The browser UI: static pages under /ui/ (kiosk, compare, console), served by the service itself.

Same origin as the API, so the pages need no CORS and send the API key only to this service. The
files are plain HTML, CSS and ES modules (service/ui/static, no build step, nothing from a CDN),
and are public: they hold no data; every call they make carries the key typed in the page. They get
their own Content-Security-Policy, still strict: scripts and styles from this origin only (no inline
code), images from this origin or blob: (photos fetched with the key, then shown), connections to
this origin only, no frames, no plugins, no form posts. `FACEVERIFY_UI_ENABLED=false` turns it off.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREFIX = "/ui"
UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'; object-src 'none'"
)
# The kiosk needs the camera; nothing else does.
UI_PERMISSIONS = "camera=(self), microphone=(), geolocation=(), payment=(), usb=()"


def is_ui_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def mount_ui(app: FastAPI) -> None:
    """Serve the pages at /ui/ (index.html for the folder itself)."""
    app.mount(PREFIX, StaticFiles(directory=STATIC_DIR, html=True), name="ui")
