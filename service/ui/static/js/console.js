// The operator's console: users (search, pages, photos, delete, unlock, add photos), the audit
// trail (filters, pages, chain check), API keys (list, create, revoke), the served model's
// operating points and DET curve, and live figures. Each section is shown only when the key's
// scopes allow what it does (the service checks again on every request).

import { ApiError, api } from "./api.js";
import { barChart, detChart } from "./chart.js";
import { byId, el, fill, show, when } from "./dom.js";
import { enrolWithChoice, showEnrolment } from "./enrol.js";
import { keyPanel } from "./keypanel.js";
import { farLabel, reasonWords } from "./words.js";

const PAGE = 20;
const OUTCOMES = { verified: "verified", rejected: "not verified" }; // the metrics' outcome labels
const STATS_EVERY_MS = 5000;
const status = byId("console-status");
let principal = null;
let statsTimer = null;

function problem(what, error) {
  const reason = error instanceof ApiError ? error.reason : "unreachable";
  fill(status, `${what}: ${reasonWords(reason)} (${reason}).`);
  status.dataset.reason = reason;
}

function done(text) {
  fill(status, text);
  delete status.dataset.reason;
}

function pagerText(offset, count, total) {
  return total === 0 ? "nothing" : `${offset + 1}–${offset + count} of ${total}`;
}

// ------------------------------------------------------------------------------------------ users

const users = { offset: 0, q: "" };

async function loadUsers() {
  let page;
  try {
    page = await api("/users", { query: { limit: PAGE, offset: users.offset, q: users.q } });
  } catch (error) {
    problem("Could not list the users", error);
    return;
  }
  const rows = page.users.map((user) =>
    el(
      "tr",
      { dataset: { user: user.user_id } },
      el("th", { scope: "row" }, user.user_id),
      el("td", {}, String(user.image_count)),
      el("td", {}, when(user.created)),
      el("td", { class: "actions" }, userActions(user)),
    ),
  );
  fill(byId("users-table").querySelector("tbody"), rows);
  fill(byId("users-caption"), users.q ? `Users whose id starts with “${users.q}”` : "Enrolled users");
  fill(byId("users-range"), pagerText(page.offset, page.users.length, page.total));
  byId("users-prev").disabled = page.offset === 0;
  byId("users-next").disabled = page.offset + page.users.length >= page.total;
}

function userActions(user) {
  const cell = el("div", { class: "buttons" });
  renderActions(cell, user);
  return cell;
}

function renderActions(cell, user) {
  fill(
    cell,
    el("button", { type: "button", onclick: () => openUser(user.user_id) }, `Photos of ${user.user_id}`),
    el("button", { type: "button", onclick: () => unlockUser(user.user_id) }, `Unlock ${user.user_id}`),
    el("button", { type: "button", class: "danger", onclick: () => confirmDelete(cell, user) }, `Delete ${user.user_id}`),
  );
}

function confirmDelete(cell, user) {
  const note = `Delete ${user.user_id} and ${user.image_count} photo${user.image_count === 1 ? "" : "s"} for ever?`;
  const yes = el("button", { type: "button", class: "danger", onclick: () => deleteUser(user.user_id) }, `Yes, delete ${user.user_id}`);
  const no = el("button", { type: "button", onclick: () => renderActions(cell, user) }, "Keep");
  fill(cell, el("span", { role: "alert" }, note), yes, no);
  no.focus();
}

async function deleteUser(userId) {
  try {
    const answer = await api(`/users/${encodeURIComponent(userId)}`, { method: "DELETE" });
    done(`Deleted ${userId} and ${answer.deleted_images} photos.`);
  } catch (error) {
    problem(`Could not delete ${userId}`, error);
  }
  if (byId("user-section").dataset.user === userId) {
    show(byId("user-section"), false);
  }
  loadUsers();
}

async function unlockUser(userId) {
  try {
    const answer = await api(`/users/${encodeURIComponent(userId)}/unlock`, { method: "POST" });
    done(answer.was_locked ? `${userId} was locked out and is unlocked now.` : `${userId} was not locked out.`);
  } catch (error) {
    problem(`Could not unlock ${userId}`, error);
  }
}

const shownUrls = [];

async function openUser(userId) {
  let user;
  try {
    user = await api(`/users/${encodeURIComponent(userId)}`);
  } catch (error) {
    problem(`Could not open ${userId}`, error);
    return;
  }
  while (shownUrls.length) {
    URL.revokeObjectURL(shownUrls.pop());
  }
  const section = byId("user-section");
  section.dataset.user = userId;
  fill(byId("user-title"), `User ${userId}`);
  fill(byId("user-summary"), `${user.images.length} photo${user.images.length === 1 ? "" : "s"}, enrolled ${when(user.created)}; served model ${user.model_version}.`);
  fill(
    byId("user-photos"),
    user.images.map((image) => {
      const item = el("li", { dataset: { image: image.image_id } });
      const button = el(
        "button",
        { type: "button", onclick: () => showPhoto(userId, image, item) },
        `Show photo ${image.image_id}`,
      );
      item.append(button, el("span", { class: "help" }, `${when(image.created)}, ${Math.round(image.size / 1024)} KiB`));
      return item;
    }),
  );
  show(byId("enrol-form"), Boolean(principal?.allows("enroll")));
  fill(byId("enrol-result"));
  show(section, true);
  section.focus();
}

async function showPhoto(userId, image, item) {
  let blob;
  try {
    blob = await api(`/users/${encodeURIComponent(userId)}/images/${image.image_id}/thumbnail`, { blob: true });
  } catch (error) {
    problem(`Could not show photo ${image.image_id}`, error);
    return;
  }
  const url = URL.createObjectURL(blob);
  shownUrls.push(url);
  fill(item, el("img", { src: url, alt: `Photo ${image.image_id} of ${userId}`, class: "thumb" }), el("span", { class: "help" }, `Photo ${image.image_id}`));
  done(`Photo ${image.image_id} of ${userId} shown (the view is in the audit trail).`);
}

byId("enrol-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const userId = byId("user-section").dataset.user;
  const files = [...byId("enrol-files").files];
  if (!files.length) {
    fill(byId("enrol-result"), el("p", {}, "Choose one or more photos first."));
    return;
  }
  try {
    const outcome = await enrolWithChoice(byId("enrol-result"), userId, files.map((file) => ({ blob: file, name: file.name })));
    showEnrolment(byId("enrol-result"), outcome);
  } catch (error) {
    problem("Could not enrol", error);
  }
  openUser(userId).then(() => loadUsers());
});

byId("user-close").addEventListener("click", () => show(byId("user-section"), false));
byId("users-search").addEventListener("submit", (event) => {
  event.preventDefault();
  users.q = byId("users-q").value.trim();
  users.offset = 0;
  loadUsers();
});
byId("users-prev").addEventListener("click", () => {
  users.offset = Math.max(0, users.offset - PAGE);
  loadUsers();
});
byId("users-next").addEventListener("click", () => {
  users.offset += PAGE;
  loadUsers();
});

// ------------------------------------------------------------------------------------------ audit

const audit = { offset: 0, filters: {} };

function isoOrEmpty(local) {
  return local ? new Date(local).toISOString() : "";
}

async function loadAudit() {
  let page;
  try {
    page = await api("/audit", { query: { ...audit.filters, limit: PAGE, offset: audit.offset } });
  } catch (error) {
    problem("Could not read the audit trail", error);
    return;
  }
  const rows = page.entries.map((entry) =>
    el(
      "tr",
      { dataset: { seq: entry.seq, action: entry.action } },
      el("td", {}, String(entry.seq)),
      el("td", {}, when(entry.time)),
      el("td", {}, entry.key_name ?? "–"),
      el("td", {}, entry.user_id ?? "–"),
      el("td", {}, entry.action),
      el("td", {}, entry.outcome),
      el("td", {}, entry.reason ?? ""),
    ),
  );
  fill(byId("audit-table").querySelector("tbody"), rows);
  fill(byId("audit-range"), pagerText(page.offset, page.entries.length, page.total));
  byId("audit-prev").disabled = page.offset === 0;
  byId("audit-next").disabled = page.offset + page.entries.length >= page.total;
}

async function checkChain() {
  const out = byId("audit-chain");
  fill(out, "Checking the chain…");
  try {
    const chain = await api("/audit/chain");
    fill(
      out,
      chain.ok
        ? `Chain intact: ${chain.checked} entries checked, head entry ${chain.last_seq} (${chain.last_hash.slice(0, 16)}…).`
        : `Chain BROKEN at entry ${chain.bad_seq}: ${chain.problem}.`,
    );
    out.dataset.ok = String(chain.ok);
  } catch (error) {
    fill(out, `Could not check the chain: ${reasonWords(error.reason ?? "unreachable")}.`);
  }
}

byId("audit-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  audit.filters = {
    user_id: form.get("user_id").trim(),
    action: form.get("action").trim(),
    outcome: form.get("outcome"),
    key_name: form.get("key_name").trim(),
    since: isoOrEmpty(form.get("since")),
    until: isoOrEmpty(form.get("until")),
  };
  audit.offset = 0;
  loadAudit();
});
byId("audit-prev").addEventListener("click", () => {
  audit.offset = Math.max(0, audit.offset - PAGE);
  loadAudit();
});
byId("audit-next").addEventListener("click", () => {
  audit.offset += PAGE;
  loadAudit();
});
byId("audit-chain-check").addEventListener("click", checkChain);

// ------------------------------------------------------------------------------------------- keys

async function loadKeys() {
  let answer;
  try {
    answer = await api("/keys");
  } catch (error) {
    problem("Could not list the keys", error);
    return;
  }
  const rows = answer.keys.map((key) =>
    el(
      "tr",
      { dataset: { key: key.name, revoked: Boolean(key.revoked) } },
      el("th", { scope: "row" }, key.name),
      el("td", {}, key.scopes.join(", ")),
      el("td", {}, when(key.created)),
      el("td", {}, key.revoked ? `revoked ${when(key.revoked)}` : "active"),
      el(
        "td",
        {},
        key.revoked || key.name === principal?.name
          ? ""
          : el("button", { type: "button", class: "danger", onclick: () => revokeKey(key.name) }, `Revoke ${key.name}`),
      ),
    ),
  );
  fill(byId("keys-table").querySelector("tbody"), rows);
}

async function revokeKey(name) {
  try {
    await api(`/keys/${encodeURIComponent(name)}`, { method: "DELETE" });
    done(`Key ${name} revoked: it is refused from its next request on.`);
  } catch (error) {
    problem(`Could not revoke ${name}`, error);
  }
  loadKeys();
}

byId("key-create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const name = String(form.get("name")).trim();
  const scopes = form.getAll("scopes");
  if (!scopes.length) {
    fill(status, `${reasonWords("invalid_scopes")}.`);
    return;
  }
  let created;
  try {
    created = await api("/keys", { method: "POST", json: { name, scopes } });
  } catch (error) {
    problem(`Could not create the key ${name}`, error);
    return;
  }
  event.target.reset();
  fill(byId("new-secret-name"), created.name);
  byId("new-secret-value").value = created.secret;
  show(byId("new-secret"), true);
  byId("new-secret-value").focus();
  byId("new-secret-value").select();
  done(`Key ${created.name} created with scopes ${created.scopes.join(", ")}.`);
  loadKeys();
});
byId("new-secret-copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(byId("new-secret-value").value);
    done("The secret is on the clipboard.");
  } catch {
    byId("new-secret-value").select();
    done("Select the secret and copy it (the clipboard is not available here).");
  }
});
byId("new-secret-done").addEventListener("click", () => {
  byId("new-secret-value").value = ""; // the page forgets it: it was shown once
  show(byId("new-secret"), false);
});

// ------------------------------------------------------------------------------------------ model

async function loadModel() {
  let card;
  try {
    card = await api("/model");
  } catch (error) {
    problem("Could not read the model card", error);
    return;
  }
  fill(byId("model-summary"), `${card.name} version ${card.version}; decisions by default at ${farLabel(card.default_far)} false accepts.`);
  fill(
    byId("model-table").querySelector("tbody"),
    card.operating_points.map((point) =>
      el(
        "tr",
        {},
        el("td", {}, `${farLabel(point.far)}${point.far === card.default_far ? " (default)" : ""}`),
        el("td", {}, point.frr === null ? "–" : `${(100 * point.frr).toFixed(2)} %`),
        el("td", {}, point.detection_threshold.toFixed(4)),
      ),
    ),
  );
  detChart(byId("det-chart"), card.operating_points);
}

// ------------------------------------------------------------------------------------------ stats

async function loadStats() {
  let stats;
  try {
    stats = await api("/stats");
  } catch (error) {
    problem("Could not read the live figures", error);
    return;
  }
  barChart(
    byId("decisions-chart"),
    Object.entries(stats.decisions).map(([label, value]) => ({ label: OUTCOMES[label] ?? label, value })),
  );
  const bars = [];
  for (const [route, q] of Object.entries(stats.latency_ms)) {
    for (const p of ["p50", "p95", "p99"]) {
      if (q[p] !== null) {
        bars.push({ label: `${route} ${p}`, value: q[p], text: q[p].toFixed(0) });
      }
    }
  }
  barChart(byId("latency-chart"), bars, " ms");
}

// --------------------------------------------------------------------------------------- sections

keyPanel((who) => {
  principal = who;
  const can = (scope) => Boolean(who?.allows(scope));
  show(byId("users-section"), can("manage"));
  show(byId("user-section"), false);
  show(byId("audit-section"), can("admin"));
  show(byId("keys-section"), can("admin"));
  show(byId("model-section"), Boolean(who));
  show(byId("stats-section"), can("manage"));
  show(byId("console-note"), !who || !(can("manage") || can("admin")));
  clearInterval(statsTimer);
  statsTimer = null;
  if (can("manage")) {
    loadUsers();
    loadStats();
    statsTimer = setInterval(loadStats, STATS_EVERY_MS);
  }
  if (can("admin")) {
    loadAudit();
    loadKeys();
    checkChain();
  }
  if (who) {
    loadModel();
  }
});
