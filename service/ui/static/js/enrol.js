// Enrolment shared by the kiosk and the console: POST /enroll, and when a photo is refused as
// `multiple_faces` (the refusal lists every face's box) let the person click the face that is
// theirs, then send that photo again with the choice (`faces` form field, one per image: "" for
// the service's own choice, else the index of the face in the refusal's list).

import { api } from "./api.js";
import { el, fill } from "./dom.js";
import { drawFaces, faceButtons, pictureWithFaces } from "./faces.js";
import { reasonWords } from "./words.js";

/** POST /enroll with `photos` ([{blob, name}]) and optional per-photo face choices. */
export function postEnrol(userId, photos, choices = []) {
  const form = new FormData();
  form.append("user_id", userId);
  photos.forEach((photo, index) => {
    form.append("images", photo.blob, photo.name);
    form.append("faces", choices[index] ?? "");
  });
  return api("/enroll", { method: "POST", form });
}

/** Ask which face to use in one refused photo; resolves with the index, or null when skipped. */
function chooseFace(container, photo, rejection) {
  const faces = rejection.faces.map((box) => ({ box })); // the refusal lists boxes, largest first
  return new Promise((resolve) => {
    const caption = `${photo.name}: ${rejection.faces.length} faces. Which one is ${photo.who}?`;
    const picture = pictureWithFaces(photo.blob, caption);
    let settled = false;
    const done = (value) => {
      if (!settled) {
        settled = true;
        URL.revokeObjectURL(picture.url);
        box.remove();
        resolve(value);
      }
    };
    const draw = () =>
      drawFaces(picture.overlay, picture.img.naturalWidth, picture.img.naturalHeight, faces, {
        onPick: done,
      });
    picture.img.addEventListener("load", draw);
    const width = rejection.image_width ?? picture.img.naturalWidth;
    const box = el(
      "section",
      { class: "picker", "aria-label": `Choose a face in ${photo.name}` },
      el("h3", {}, "Several faces: choose yours"),
      picture.figure,
      faceButtons(faces, width, done),
      el("button", { type: "button", class: "quiet", onclick: () => done(null) }, "Skip this photo"),
    );
    container.append(box);
    box.querySelector("button")?.focus();
  });
}

/**
 * Enrol `photos` for `userId`, asking in `container` which face to use wherever a photo has
 * several. Resolves with {enrolled: [...], rejected: [...]} over both rounds; rejects with the
 * ApiError of a refusal that is not per photo (422 when nothing at all was usable is per photo).
 */
export async function enrolWithChoice(container, userId, photos) {
  const named = photos.map((photo) => ({ ...photo, who: userId }));
  const first = await enrolOrRejected(userId, named);
  const enrolled = [...first.enrolled];
  const rejected = [];
  const retry = [];
  const choices = [];
  for (const rejection of first.rejected) {
    const photo = named[rejection.index] ?? named.find((p) => p.name === rejection.filename);
    if (rejection.reason === "multiple_faces" && photo && rejection.faces?.length > 1) {
      const index = await chooseFace(container, photo, rejection);
      if (index !== null) {
        retry.push(photo);
        choices.push(String(index));
        continue;
      }
    }
    rejected.push(rejection);
  }
  if (retry.length) {
    const second = await enrolOrRejected(userId, retry, choices);
    enrolled.push(...second.enrolled);
    rejected.push(...second.rejected);
  }
  return { user_id: userId, enrolled, rejected };
}

/** POST /enroll, treating "nothing usable" (per-image rejections) as a normal answer. */
async function enrolOrRejected(userId, photos, choices = []) {
  try {
    return await postEnrol(userId, photos, choices);
  } catch (error) {
    // 422/413 no_usable_image: {detail: {message, rejected: [{filename, reason, ...}]}}
    const rejected = error.body?.detail?.rejected;
    if (error.reason === "no_usable_image" && Array.isArray(rejected)) {
      return { user_id: userId, enrolled: [], rejected };
    }
    throw error;
  }
}

/** The outcome in words, into `target`. */
export function showEnrolment(target, result) {
  const n = result.enrolled.length;
  fill(
    target,
    el("h2", {}, n ? `Enrolled ${n} photo${n === 1 ? "" : "s"} for ${result.user_id}` : "Nothing was enrolled"),
    result.rejected.length
      ? el(
          "ul",
          { class: "rejected" },
          result.rejected.map((r) => el("li", { dataset: { reason: r.reason } }, `${r.filename}: ${reasonWords(r.reason)}`)),
        )
      : null,
  );
  target.dataset.enrolled = String(n);
}
