// Face boxes drawn over a picture (an SVG laid over an <img> or <video>, in image pixels), and the
// "which face?" choice for a photo with several faces: numbered boxes that can be clicked, plus one
// real button per face so that a keyboard or a screen reader can choose too.

import { el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    node.setAttribute(name, String(value));
  }
  return node;
}

/** Where a face is, in words: "left", "centre", "right" of the picture. */
export function facePlace(box, width) {
  const centre = (box[0] + box[2] / 2) / width;
  return centre < 0.36 ? "left" : centre > 0.64 ? "right" : "centre";
}

/**
 * Draw `faces` ({box: [x, y, w, h]}) on `overlay` (an <svg>) for a picture of width x height.
 * `chosen` (an index) is highlighted; `onPick(index)` makes the boxes clickable.
 */
export function drawFaces(overlay, width, height, faces, { chosen = null, onPick = null } = {}) {
  overlay.replaceChildren();
  overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
  overlay.setAttribute("preserveAspectRatio", "xMidYMid meet");
  const stroke = Math.max(2, Math.round(width / 200));
  faces.forEach((face, index) => {
    const [x, y, w, h] = face.box;
    const group = svg("g", { class: index === chosen ? "face chosen" : "face" });
    group.append(svg("rect", { x, y, width: w, height: h, "stroke-width": stroke }));
    const label = svg("text", { x: x + stroke, y: Math.max(y - stroke * 2, stroke * 8), "font-size": Math.max(14, width / 30) });
    label.textContent = String(index + 1);
    group.append(label);
    if (onPick) {
      group.classList.add("pickable");
      group.addEventListener("click", () => onPick(index));
    }
    overlay.append(group);
  });
}

/** One button per face ("Face 2, right, 140 px wide"), for keyboards and screen readers. */
export function faceButtons(faces, width, onPick, chosen = null) {
  return el(
    "div",
    { class: "face-buttons", role: "group", "aria-label": "Choose the face to use" },
    faces.map((face, index) =>
      el(
        "button",
        {
          type: "button",
          "aria-pressed": index === chosen ? "true" : "false",
          onclick: () => onPick(index),
          dataset: { face: index },
        },
        `Face ${index + 1}, ${facePlace(face.box, width)}, ${Math.round(face.box[2])} px wide`,
      ),
    ),
  );
}

/** A picture (Blob) with its face boxes: <figure><div class="picture"><img><svg></div><figcaption>. */
export function pictureWithFaces(blob, caption) {
  const url = URL.createObjectURL(blob);
  const img = el("img", { src: url, alt: caption });
  const overlay = svg("svg", { class: "overlay", "aria-hidden": "true" });
  const frame = el("div", { class: "picture" }, img, overlay);
  const figure = el("figure", {}, frame, el("figcaption", {}, caption));
  return { figure, img, overlay, url };
}
