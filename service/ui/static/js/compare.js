// Compare page: two photos -> POST /compare (verify scope) -> both photos with their face boxes
// (the compared face highlighted) and the decision at each calibrated level of the model card.
// A similarity score is shown only when the service includes it (keys allowed to see scores).

import { ApiError, api } from "./api.js";
import { byId, el, fill, show } from "./dom.js";
import { drawFaces, pictureWithFaces } from "./faces.js";
import { keyPanel } from "./keypanel.js";
import { farLabel, reasonWords } from "./words.js";

const photos = { a: null, b: null };
const pictures = { a: null, b: null };
const button = byId("compare-button");
const status = byId("compare-status");
const resultBox = byId("compare-result");
let principal = null;

function refresh() {
  button.disabled = !(photos.a && photos.b && principal?.allows("verify"));
  if (principal && !principal.allows("verify")) {
    fill(status, "This key lacks the verify scope: comparing needs it.");
  }
}

function setPhoto(side, file) {
  if (!file) {
    return;
  }
  photos[side] = file;
  if (pictures[side]) {
    URL.revokeObjectURL(pictures[side].url);
  }
  pictures[side] = pictureWithFaces(file, `${side === "a" ? "First" : "Second"} photo: ${file.name}`);
  fill(byId(`preview-${side}`), pictures[side].figure);
  show(resultBox, false);
  refresh();
}

for (const side of ["a", "b"]) {
  const input = byId(`photo-${side}`);
  const zone = byId(`drop-${side}`);
  input.addEventListener("change", () => setPhoto(side, input.files[0]));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    setPhoto(side, event.dataTransfer.files[0]);
  });
}

function drawSide(side, found) {
  const picture = pictures[side];
  const draw = () => drawFaces(picture.overlay, found.width, found.height, found.faces, { chosen: found.chosen });
  if (picture.img.complete) {
    draw();
  } else {
    picture.img.addEventListener("load", draw, { once: true });
  }
  const caption = picture.figure.querySelector("figcaption");
  const count = found.faces.length;
  fill(
    caption,
    `${side === "a" ? "First" : "Second"} photo: ${count} face${count === 1 ? "" : "s"} found`,
    found.chosen !== null && found.chosen !== undefined ? `, face ${found.chosen + 1} compared` : "",
  );
}

byId("compare-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  form.append("image_a", photos.a, photos.a.name);
  form.append("image_b", photos.b, photos.b.name);
  button.disabled = true;
  fill(status, "Comparing…");
  let answer;
  try {
    answer = await api("/compare", { method: "POST", form });
  } catch (error) {
    const reason = error instanceof ApiError ? error.reason : "unreachable";
    fill(status, `Could not compare: ${reasonWords(reason)} (${reason}).`);
    status.dataset.reason = reason;
    refresh();
    return;
  }
  drawSide("a", answer.a);
  drawSide("b", answer.b);
  const rows = answer.levels.map((level) =>
    el(
      "tr",
      { dataset: { far: level.target_far, same: level.same } },
      el("td", {}, `${farLabel(level.target_far)}${level.target_far === answer.default_far ? " (default)" : ""}`),
      el("td", {}, level.frr === null || level.frr === undefined ? "–" : `${(100 * level.frr).toFixed(2)} %`),
      el("td", { class: level.same ? "yes" : "no" }, level.same ? "Same person" : "Not the same person"),
    ),
  );
  fill(byId("levels").querySelector("tbody"), rows);
  const atDefault = answer.levels.find((level) => level.target_far === answer.default_far);
  fill(
    byId("compare-summary"),
    atDefault ? `At the default level (${farLabel(answer.default_far)} false accepts): ${atDefault.same ? "the same person" : "not the same person"}.` : "",
    answer.similarity !== null && answer.similarity !== undefined ? ` Similarity ${answer.similarity.toFixed(3)}.` : "",
  );
  show(resultBox, true);
  fill(status, "Compared.");
  delete status.dataset.reason;
  refresh();
});

keyPanel((who) => {
  principal = who;
  refresh();
});
