"""The browser UI walked in a real Chromium against a live service (release model, SQLite).

The camera is a recorded clip of a singing performer (../shared/data/frames/short_hamilton_clip):
the kiosk enrols him from it, and answers a liveness challenge end to end. A recording cannot act
out random steps, so the liveness test asserts the flow (challenge, each step shown in order, the
burst sent at the planned size, the decision shown) and that the page says what the server decided,
not a pass. Every page passes axe-core's WCAG 2.1 A/AA rules with no serious or critical violation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from selenium.webdriver.common.by import By
from ui_pages import axe_violations, calls, click, describe, docs_shot, open_page, sign_in, wait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
FRAMES = REPO.parent / "shared" / "data" / "frames" / "short_hamilton_clip" / "frames"


def make_key(service: Any, name: str, scopes: list[str]) -> str:
    answer = httpx.post(f"{service.url}/keys", json={"name": name, "scopes": scopes}, headers=service.headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["secret"])


def audit(service: Any, **filters: Any) -> list[dict[str, Any]]:
    answer = httpx.get(f"{service.url}/audit", params=filters, headers=service.headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["entries"])


def ensure_enrolled(service: Any, user_id: str, frames: range) -> None:
    files = [
        ("images", (f"{n}.jpg", (FRAMES / f"frame_{n:04d}.jpg").read_bytes(), "image/jpeg")) for n in frames
    ]
    url = f"{service.url}/enroll"
    answer = httpx.post(url, data={"user_id": user_id}, files=files, headers=service.headers, timeout=120)
    assert answer.status_code == 201, answer.text


def no_serious_violations(browser: Any, page: str) -> None:
    """axe-core finds no serious or critical violation, and the page logged no script error and no
    Content-Security-Policy violation (a refused inline script or style would be one)."""
    violations = axe_violations(browser)
    assert not violations, f"{page}:\n{describe(violations)}"
    bad = ("Content Security Policy", "Uncaught")
    errors = [e["message"] for e in browser.get_log("browser") if any(b in e["message"] for b in bad)]
    assert not errors, f"{page}: {errors}"


def tab_order(browser: Any, presses: int) -> list[str]:
    """What Tab focuses, from the top of the page: element ids (or the tag and text)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    # Focus the body: the next Tab starts from the top of the page.
    browser.execute_script(
        "document.body.tabIndex = -1; document.body.focus(); document.body.removeAttribute('tabindex')"
    )
    seen = []
    for _ in range(presses):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        seen.append(
            browser.execute_script(
                "const e = document.activeElement; if (e.classList.contains('skip')) return 'skip';"
                "return e.id || e.tagName + ':' + e.textContent.trim();"
            )
        )
    return seen


def start_camera(browser: Any) -> None:
    browser.find_element(By.ID, "camera-button").click()
    guidance = browser.find_element(By.ID, "guidance")
    # The first frame check has come back: the guidance names what the service saw.
    wait(browser, lambda: guidance.get_attribute("data-guidance"), 60, "no guidance from POST /faces")


def test_kiosk_enrols_the_performer_from_the_camera(browser, ui_service) -> None:
    key = make_key(ui_service, "kiosk-enrol", ["enroll", "verify"])
    open_page(browser, ui_service.url, "kiosk.html")
    assert "kiosk-enrol" in sign_in(browser, key)
    no_serious_violations(browser, "kiosk")
    # Keyboard: Tab walks the controls in reading order, the skip link first.
    order = tab_order(browser, 9)
    assert order[:2] == ["skip", "A:faceverify"], order  # then the pages, the key, the form
    assert order.index("key-forget") < order.index("user-id") < order.index("camera-button"), order
    browser.find_element(By.ID, "user-id").send_keys("performer")
    start_camera(browser)
    checks = [c for c in calls(browser) if c["url"].endswith("/faces")]
    assert checks and checks[0]["status"] == 200 and checks[0]["key_sent"]
    assert checks[0]["json"]["width"] == 640 and checks[0]["json"]["height"] == 360  # the clip's frames
    browser.find_element(By.ID, "enroll-button").click()
    result = browser.find_element(By.ID, "result")
    wait(browser, lambda: result.get_attribute("data-outcome"), 120, "enrolment did not finish")
    assert result.get_attribute("data-outcome") == "enrolled", result.text
    sent = [c for c in calls(browser) if c["url"].endswith("/enroll")]
    assert len(sent) == 1 and sent[0]["status"] == 201 and sent[0]["images"] == 3
    enrolled = sent[0]["json"]["enrolled"]
    assert int(result.get_attribute("data-enrolled")) == len(enrolled) >= 1
    assert f"Enrolled {len(enrolled)} photo" in result.text
    user = httpx.get(f"{ui_service.url}/users/performer", headers=ui_service.headers).json()
    assert {i["image_id"] for i in user["images"]} >= {e["image_id"] for e in enrolled}
    entry = audit(ui_service, action="enroll", user_id="performer")[0]
    assert entry["key_name"] == "kiosk-enrol" and entry["outcome"] == "ok"


STEP_OBSERVER = """
window.__steps = [];
const box = document.getElementById('step');
new MutationObserver(() => {
  const step = box.dataset.step;
  if (step && window.__steps[window.__steps.length - 1] !== step) {
    window.__steps.push(step);
    window.__words = (window.__words || []).concat([document.getElementById('step-words').textContent]);
  }
}).observe(box, {attributes: true, attributeFilter: ['data-step']});
"""


def test_kiosk_answers_a_liveness_challenge_end_to_end(browser, ui_service) -> None:
    ensure_enrolled(ui_service, "singer", range(109, 171, 15))
    key = make_key(ui_service, "kiosk-verify", ["verify"])
    open_page(browser, ui_service.url, "kiosk.html")
    sign_in(browser, key)
    assert not browser.find_element(By.ID, "enroll-button").is_displayed()  # a verify key cannot enrol
    browser.find_element(By.ID, "user-id").send_keys("singer")
    start_camera(browser)
    browser.execute_script(STEP_OBSERVER)
    browser.find_element(By.ID, "verify-button").click()
    step_box = browser.find_element(By.ID, "step")
    wait(
        browser, lambda: step_box.get_attribute("data-step") not in (None, "", "neutral"), 30, "no step shown"
    )
    docs_shot(browser, "ui-kiosk-challenge")
    result = browser.find_element(By.ID, "result")
    wait(browser, lambda: result.get_attribute("data-outcome"), 300, "no decision shown")

    made = [c for c in calls(browser) if urlparse(c["url"]).path not in ("/faces", "/keys/me")]
    assert [urlparse(c["url"]).path for c in made] == ["/liveness/challenge", "/verify"], made
    challenge, answer = made[0]["json"], made[1]
    assert made[0]["status"] == 201 and answer["status"] == 200, made
    # Every step of the challenge was shown, in the asked order, after the neutral start.
    shown = browser.execute_script("return window.__steps")
    assert shown == ["neutral", *challenge["steps"]], (shown, challenge)
    # The burst at the rate the service expects: 1 s facing the camera + 2 s per step at 6 frames/s.
    planned = round((challenge.get("neutral_s", 1) + challenge.get("step_s", 2) * len(challenge["steps"]))
                    * challenge.get("frame_rate", 6))  # fmt: skip
    assert answer["frames"] == min(planned, challenge.get("max_frames", 48))
    decided = answer["json"]
    live = decided["liveness"]
    assert live["steps"] == challenge["steps"] and live["frames"] == answer["frames"]
    # The page says what the server decided, in words, with the code for support.
    expected = (
        "verified" if decided["verified"] else (live["reason"] if not live["passed"] else "not_the_user")
    )
    assert result.get_attribute("data-reason") == expected
    assert result.get_attribute("data-outcome") == ("verified" if decided["verified"] else "not_verified")
    if not decided["verified"]:
        assert "Not verified" in result.text and f"({expected})" in result.text
    # A verify key gets no score, and the page shows none.
    assert decided["best_similarity"] is None and "similarity" not in result.text.lower()
    no_serious_violations(browser, "kiosk (decision)")
    entry = audit(ui_service, action="verify", user_id="singer")[0]
    assert entry["key_name"] == "kiosk-verify"
    assert entry["outcome"] == ("ok" if decided["verified"] else "denied")
    if not live["passed"]:
        assert entry["reason"] == f"liveness_failed:{live['reason']}"


def test_compare_page_boxes_faces_and_decides_at_each_level(browser, ui_service) -> None:
    key = make_key(ui_service, "compare", ["verify"])
    open_page(browser, ui_service.url, "compare.html")
    sign_in(browser, key)
    no_serious_violations(browser, "compare (empty)")
    browser.find_element(By.ID, "photo-a").send_keys(str(LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"))
    browser.find_element(By.ID, "photo-b").send_keys(str(LFW / "Colin_Powell" / "Colin_Powell_0002.jpg"))
    button = browser.find_element(By.ID, "compare-button")
    wait(browser, button.is_enabled, 10, "compare stays disabled")
    button.click()
    table = browser.find_element(By.ID, "compare-result")
    wait(browser, table.is_displayed, 60, "no comparison shown")
    answer = next(c for c in calls(browser) if c["url"].endswith("/compare"))
    assert answer["status"] == 200
    body = answer["json"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#levels tbody tr")
    assert len(rows) == len(body["levels"]) >= 1
    for row, level in zip(rows, body["levels"], strict=True):
        assert row.get_attribute("data-same") == str(level["same"]).lower()
        assert ("Same person" if level["same"] else "Not the same person") in row.text
    for side, caption in (("a", "First"), ("b", "Second")):
        boxes = browser.find_elements(By.CSS_SELECTOR, f"#preview-{side} svg .face")
        assert len(boxes) == len(body[side]["faces"]) >= 1
        assert caption in browser.find_element(By.CSS_SELECTOR, f"#preview-{side} figcaption").text
    assert body["similarity"] is None  # a verify key sees decisions, not scores
    no_serious_violations(browser, "compare (result)")
    # The page's policy is enforced by the browser: an inline script injected now does not run.
    browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.__inline = 1';"
        "document.body.append(s);"
    )
    assert browser.execute_script("return window.__inline") is None
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused, "the browser did not report the refused inline script"
    docs_shot(browser, "ui-compare")


def test_console_keys_users_photos_and_audit(browser, ui_service) -> None:
    ensure_enrolled(ui_service, "doomed", range(120, 150, 10))
    open_page(browser, ui_service.url, "console.html")
    sign_in(browser, ui_service.api_key)
    keys_table = browser.find_element(By.ID, "keys-table")
    wait(browser, lambda: "bootstrap-admin" in keys_table.text, 30, "keys not listed")
    no_serious_violations(browser, "console")

    # Create a key: its secret is shown once; it works; revoke it in the page; it is refused.
    browser.find_element(By.ID, "new-key-name").send_keys("temp-door")
    browser.find_element(By.CSS_SELECTOR, "#key-create input[value=verify]").click()
    browser.find_element(By.CSS_SELECTOR, "#key-create button[type=submit]").click()
    secret_field = browser.find_element(By.ID, "new-secret-value")
    wait(browser, lambda: secret_field.get_attribute("value"), 30, "no secret shown")
    secret = secret_field.get_attribute("value")
    me = httpx.get(f"{ui_service.url}/keys/me", headers={"X-API-Key": secret})
    assert me.status_code == 200 and me.json() == {"name": "temp-door", "scopes": ["verify"]}
    browser.find_element(By.ID, "new-secret-done").click()
    assert secret_field.get_attribute("value") == ""
    click(browser, "tr[data-key=temp-door] button")
    wait(
        browser, lambda: "revoked" in browser.find_element(By.CSS_SELECTOR, "tr[data-key=temp-door]").text, 30
    )
    refused = httpx.get(f"{ui_service.url}/keys/me", headers={"X-API-Key": secret})
    assert refused.status_code == 401 and refused.json()["reason"] == "invalid_api_key"
    assert [e["action"] for e in audit(ui_service, key_name="bootstrap-admin")[:2]] == [
        "key_revoke",
        "key_create",
    ]

    # A user's photo, decrypted on request; the view is audited.
    users_table = browser.find_element(By.ID, "users-table")
    wait(browser, lambda: "doomed" in users_table.text, 30, "users not listed")
    browser.find_element(By.XPATH, "//button[text()='Photos of doomed']").click()
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#user-photos button"), 30, "no photos")
    browser.find_element(By.CSS_SELECTOR, "#user-photos button").click()
    wait(
        browser,
        lambda: browser.execute_script(
            "const i = document.querySelector('#user-photos img');"
            "return Boolean(i && i.complete && i.naturalWidth > 0);"
        ),
        30,
    )
    viewed = audit(ui_service, action="view_image", user_id="doomed")
    assert len(viewed) == 1 and viewed[0]["key_name"] == "bootstrap-admin"
    docs_shot(browser, "ui-console", scroll_to="users-section")

    # A group photo: refused as multiple_faces with every face's box; clicking a face enrols it.
    group = LFW / "George_W_Bush" / "George_W_Bush_0020.jpg"
    browser.find_element(By.ID, "enrol-files").send_keys(str(group))
    browser.find_element(By.CSS_SELECTOR, "#enrol-form button[type=submit]").click()
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".picker svg .face"), 60, "no face picker")
    refusal = next(c for c in calls(browser) if urlparse(c["url"]).path == "/enroll")["json"]
    boxes = refusal["detail"]["rejected"][0]["faces"]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".picker svg .face")) == len(boxes) >= 2
    assert len(browser.find_elements(By.CSS_SELECTOR, ".picker .face-buttons button")) == len(boxes)
    no_serious_violations(browser, "console (face picker)")
    browser.find_elements(By.CSS_SELECTOR, ".picker svg .face")[1].click()  # the smaller face
    outcome = browser.find_element(By.ID, "enrol-result")
    wait(
        browser, lambda: outcome.get_attribute("data-enrolled") == "1", 60, "the chosen face was not enrolled"
    )
    resent = [c for c in calls(browser) if urlparse(c["url"]).path == "/enroll"][-1]
    assert resent["faces"] == ["1"] and resent["status"] == 201
    stored = httpx.get(f"{ui_service.url}/users/doomed", headers=ui_service.headers).json()["images"]
    assert boxes[1] in [i["box"] for i in stored]

    # Unlock (doomed was never locked: the page says so, as the service answered).
    browser.find_element(By.XPATH, "//button[text()='Unlock doomed']").click()
    status = browser.find_element(By.ID, "console-status")
    wait(browser, lambda: "doomed was not locked out" in status.text, 30, "no unlock answer")
    assert audit(ui_service, action="unlock", user_id="doomed")[0]["summary"]["was_locked"] is False

    # Delete the user (two steps) and see it gone.
    browser.find_element(By.XPATH, "//button[text()='Delete doomed']").click()
    browser.find_element(By.XPATH, "//button[text()='Yes, delete doomed']").click()
    wait(browser, lambda: "doomed" not in users_table.text, 30, "user still listed")
    assert httpx.get(f"{ui_service.url}/users/doomed", headers=ui_service.headers).status_code == 404

    # Page the audit trail: the second page starts where the first ended. (More than a page of
    # entries: an operator's day of key changes.)
    for n in range(12):
        make_key(ui_service, f"door-{n}", ["verify"])
        assert httpx.delete(f"{ui_service.url}/keys/door-{n}", headers=ui_service.headers).status_code == 200
    total = len(audit(ui_service, limit=500))
    assert total > 20, "the walk should have written more than one page of audit entries"
    browser.find_element(By.CSS_SELECTOR, "#audit-filters button[type=submit]").click()  # reload, no filter
    audit_range = browser.find_element(By.ID, "audit-range")
    wait(browser, lambda: audit_range.text == f"1–20 of {total}", 30, "audit not reloaded")
    rows_before = [
        r.get_attribute("data-seq") for r in browser.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr")
    ]
    assert len(rows_before) == 20
    browser.find_element(By.ID, "audit-next").click()
    wait(browser, lambda: browser.find_element(By.ID, "audit-range").text.startswith("21–"), 30)
    second = [
        int(r.get_attribute("data-seq"))
        for r in browser.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr")
    ]
    assert max(second) < min(int(s) for s in rows_before)
    chain = browser.find_element(By.ID, "audit-chain")
    assert chain.get_attribute("data-ok") == "true", chain.text
    # The model's operating points and the live figures (drawn from /model and /stats).
    model = httpx.get(f"{ui_service.url}/model", headers=ui_service.headers).json()
    rows = browser.find_elements(By.CSS_SELECTOR, "#model-table tbody tr")
    assert len(rows) == len(model["operating_points"]) >= 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#det-chart circle")) == len(model["operating_points"])
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#latency-chart rect"), 30, "no latency")
    docs_shot(browser, "ui-console-model", scroll_to="model-section")
