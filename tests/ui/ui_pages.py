"""Helpers the browser tests share: sign in with a key, wait for the page, record the page's API
calls (window.fetch wrapped from the test, not by the page), run axe-core in the page, and save
documentation screenshots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "node_modules" / "axe-core" / "axe.js"  # npm ci (make test) from package-lock.json

# Installed in the page by the test (WebDriver script, not subject to the page's CSP): every call
# the page makes to the service, with its method, frame count, face choices, status and JSON answer.
RECORD_CALLS = """
if (!window.__calls) {
  window.__calls = [];
  const original = window.fetch;
  window.fetch = async (input, init = {}) => {
    const body = init.body;
    const call = {
      url: String(input), method: init.method || 'GET',
      frames: body instanceof FormData ? body.getAll('frames').length : null,
      images: body instanceof FormData ? body.getAll('images').length : null,
      faces: body instanceof FormData ? body.getAll('faces') : null,
      key_sent: Boolean(init.headers && init.headers['X-API-Key']),
    };
    window.__calls.push(call);
    const response = await original(input, init);
    call.status = response.status;
    try { call.json = await response.clone().json(); } catch (e) { call.json = null; }
    return response;
  };
}
"""


def wait(browser: Any, condition: Any, timeout: float = 30.0, message: str = "") -> Any:
    """Poll `condition` until it is truthy. A page that re-renders a table between finding an element
    and reading it (slow, busy box) makes the element stale: that is one more poll, not a failure."""
    return WebDriverWait(
        browser, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
    ).until(lambda _: condition(), message)


def click(browser: Any, css: str, timeout: float = 30.0) -> None:
    """Click the element `css` names once it is there, finding it again if the page re-rendered it."""

    def clicked() -> bool:
        elements = browser.find_elements(By.CSS_SELECTOR, css)
        if not elements:
            return False
        elements[0].click()
        return True

    wait(browser, clicked, timeout, f"nothing to click at {css}")


def open_page(browser: Any, base: str, page: str) -> None:
    browser.get(f"{base}/ui/{page}")
    wait(browser, lambda: browser.find_elements(By.ID, "key-form"), message=f"{page}: no key form")
    browser.execute_script(RECORD_CALLS)


def sign_in(browser: Any, key: str) -> str:
    """Type the key in the page's key form; answers the status line ('Signed in with key ...')."""
    status = browser.find_element(By.ID, "key-status")
    if browser.find_element(By.ID, "key-forget").is_displayed():
        browser.find_element(By.ID, "key-forget").click()
    field = browser.find_element(By.ID, "api-key")
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait(
        browser, lambda: "Signed in" in status.text or "not accepted" in status.text, message="no key status"
    )
    return str(status.text)


def calls(browser: Any) -> list[dict[str, Any]]:
    return list(browser.execute_script("return window.__calls || []"))


def docs_shot(browser: Any, name: str, scroll_to: str | None = None) -> None:
    """With FACEVERIFY_UI_DOCS_SHOTS=<folder> (e.g. docs), save the page as <folder>/<name>.png
    (scrolled to the element with id `scroll_to` first)."""
    folder = os.environ.get("FACEVERIFY_UI_DOCS_SHOTS")
    if folder:
        if scroll_to:
            browser.execute_script("document.getElementById(arguments[0]).scrollIntoView()", scroll_to)
        target = (REPO / folder) if not Path(folder).is_absolute() else Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(target / f"{name}.png"))


def axe_violations(driver: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the current page (WCAG 2.0-2.2 A/AA rules,
    target sizes for touch included).

    axe.js is injected through WebDriver (not a <script> tag), so the page's CSP stays as served."""
    assert AXE.is_file(), f"{AXE} is missing: run `npm ci` (make test does)"
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag',"
        " values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']},"
        " resultTypes: ['violations']}).then(r => done(r.violations), e => done([{id: 'axe-error', impact:"
        " 'critical', help: String(e), nodes: []}]));"
    )
    return [v for v in result if v.get("impact") in ("serious", "critical")]


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n.get('target') for n in v.get('nodes', [])][:5]}"
        for v in violations
    )
