// The API key form shared by every page: typed once per tab (kept in memory and sessionStorage,
// see api.js), checked with GET /keys/me, which answers the key's name and scopes. Pages show
// only what those scopes allow.

import { ApiError, forgetKey, getKey, setKey, whoAmI } from "./api.js";
import { byId, el, fill, show } from "./dom.js";
import { reasonWords } from "./words.js";

const PAGES = [
  ["home", "index.html", "faceverify"],
  ["kiosk", "kiosk.html", "Kiosk"],
  ["compare", "compare.html", "Compare"],
  ["console", "console.html", "Console"],
];

/** The header every page shares (<header id="top" data-page="...">): the pages, the key form. */
function renderHeader() {
  const header = byId("top");
  const page = header.dataset.page;
  fill(
    header,
    el(
      "nav",
      { "aria-label": "Pages" },
      PAGES.map(([id, href, label]) => el("a", { href, "aria-current": id === page ? "page" : null }, label)),
    ),
    el(
      "section",
      { id: "key-panel", "aria-label": "API key" },
      el(
        "form",
        { id: "key-form" },
        el("label", { for: "api-key" }, "API key"),
        el("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off", spellcheck: "false" }),
        el("button", { type: "submit" }, "Use this key"),
      ),
      el("p", { id: "key-status", role: "status" }),
      el("button", { id: "key-forget", type: "button", class: "quiet" }, "Forget the key"),
    ),
  );
}

/**
 * Draw the page's header and wire its key form. `onPrincipal(principal | null)` runs once the key is known
 * (also at load when the tab already has one) and with null when it is forgotten or refused.
 */
export function keyPanel(onPrincipal) {
  renderHeader();
  const form = byId("key-form");
  const input = byId("api-key");
  const status = byId("key-status");
  const forget = byId("key-forget");

  async function check() {
    try {
      const principal = await whoAmI();
      fill(status, `Signed in with key “${principal.name}”: scopes ${[...principal.scopes].sort().join(", ")}.`);
      show(form, false);
      show(forget, true);
      onPrincipal(principal);
    } catch (error) {
      forgetKey();
      const reason = error instanceof ApiError ? error.reason : "unreachable";
      fill(status, `Key not accepted: ${reasonWords(reason)}.`);
      show(form, true);
      show(forget, false);
      onPrincipal(null);
      input.focus();
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    input.value = "";
    if (!key) {
      fill(status, "Enter an API key.");
      return;
    }
    setKey(key);
    check();
  });
  forget.addEventListener("click", () => {
    forgetKey();
    fill(status, "The key was forgotten in this tab.");
    show(form, true);
    show(forget, false);
    onPrincipal(null);
    input.focus();
  });
  if (getKey()) {
    check();
  } else {
    show(forget, false);
    onPrincipal(null);
  }
}
