// The kiosk: camera preview with live guidance, enrol from the camera, verify with a liveness
// challenge. Guidance comes from POST /faces (the service's own face finder and quality gate on
// one frame), so what the screen says is exactly what enrolment will judge.

import { ApiError, api } from "./api.js";
import { grabFrame, startCamera, stopCamera } from "./camera.js";
import { byId, el, fill, show } from "./dom.js";
import { drawFaces } from "./faces.js";
import { enrolWithChoice, showEnrolment } from "./enrol.js";
import { keyPanel } from "./keypanel.js";
import { GUIDANCE, livenessWords, reasonWords, stepDisplay } from "./words.js";

// What the liveness checks were tuned for (the webcam client's defaults); the challenge's own
// fields win when the service sends them.
const BURST_DEFAULTS = { frame_rate: 6, neutral_s: 1, step_s: 2, max_frames: 48 };
const ENROL_PHOTOS = 3; // good frames to enrol
const ENROL_SPACING_MS = 700; // between two enrolment frames: a little pose variety
const ENROL_TIMEOUT_MS = 30000;
const GUIDANCE_PAUSE_MS = 400; // between frame checks (one in flight at a time)
const MULTIPLE_FACES_PATIENCE = 4; // frame checks with several faces before offering the choice

const video = byId("preview");
const overlay = byId("preview-overlay");
const canvas = byId("grab");
const guidance = byId("guidance");
const userInput = byId("user-id");
const cameraButton = byId("camera-button");
const enrolButton = byId("enroll-button");
const verifyButton = byId("verify-button");
const cancelButton = byId("cancel-button");
const result = byId("result");
const stepBox = byId("step");
const stepArrow = byId("step-arrow");
const stepWords = byId("step-words");
const progressBox = byId("step-progress-box");
const progress = byId("step-progress");
const progressLabel = byId("step-progress-label");
const scopeNote = byId("scope-note");

let principal = null;
let cameraOn = false;
let mode = "idle"; // idle | enrol | verify
let cancelled = false;
let lastGuidance = "";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function say(text) {
  if (text !== lastGuidance) {
    lastGuidance = text;
    fill(guidance, text);
  }
}

function refreshButtons() {
  const canEnrol = Boolean(principal?.allows("enroll"));
  const canVerify = Boolean(principal?.allows("verify"));
  show(enrolButton, canEnrol);
  show(verifyButton, canVerify);
  const busy = mode !== "idle";
  enrolButton.disabled = busy || !cameraOn;
  verifyButton.disabled = busy || !cameraOn;
  cameraButton.disabled = busy;
  show(cancelButton, busy);
  fill(
    scopeNote,
    !principal
      ? "Enter an API key above (scope enroll to enrol, verify to verify)."
      : canEnrol || canVerify
        ? ""
        : "This key has neither the enroll nor the verify scope: the kiosk needs one of them.",
  );
}

function userId() {
  const value = userInput.value.trim();
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(value)) {
    userInput.setAttribute("aria-invalid", "true");
    userInput.focus();
    fill(result, el("p", { class: "error" }, reasonWords("invalid_user_id")));
    return null;
  }
  userInput.removeAttribute("aria-invalid");
  return value;
}

/** POST /faces with one frame: the faces (boxes, quality) and the enrolment judgement. */
async function checkFrame(frame) {
  const form = new FormData();
  form.append("image", frame.blob, "frame.jpg");
  return api("/faces", { method: "POST", form });
}

function guidanceText(check) {
  if (check.guidance === null || check.guidance === undefined) {
    return "Face found: hold still.";
  }
  return `${GUIDANCE[check.guidance] ?? reasonWords(check.guidance)}.`;
}

function showCheck(check) {
  drawFaces(overlay, check.width, check.height, check.faces);
  say(guidanceText(check));
  guidance.dataset.guidance = check.guidance ?? "ok";
}

/** While the camera is on and nothing else runs: one frame check at a time, spoken when it changes. */
async function guidanceLoop() {
  while (cameraOn) {
    if (mode === "idle" && principal && (principal.allows("verify") || principal.allows("enroll"))) {
      try {
        showCheck(await checkFrame(await grabFrame(video, canvas, 0.8)));
      } catch (error) {
        if (error instanceof ApiError) {
          say(`${reasonWords(error.reason)}.`);
          if (error.retryAfter) {
            await sleep(1000 * Number(error.retryAfter));
          }
        }
      }
    }
    await sleep(GUIDANCE_PAUSE_MS);
  }
}

async function toggleCamera() {
  if (cameraOn) {
    cameraOn = false;
    stopCamera(video);
    overlay.replaceChildren();
    fill(cameraButton, "Start the camera");
    say("The camera is off.");
    refreshButtons();
    return;
  }
  try {
    await startCamera(video);
  } catch (error) {
    say(`The camera could not start: ${error.message}.`);
    return;
  }
  cameraOn = true;
  fill(cameraButton, "Stop the camera");
  say("Camera on: look at the camera.");
  refreshButtons();
  guidanceLoop();
}

function showError(title, error) {
  const reason = error instanceof ApiError ? error.reason : "unreachable";
  const wait = error instanceof ApiError && error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
  fill(result, el("h2", {}, title), el("p", {}, `${reasonWords(reason)}.${wait}`), el("p", { class: "code" }, `(${reason})`));
  result.dataset.outcome = "error";
  result.dataset.reason = reason;
}

async function run(newMode, job) {
  const who = userId();
  if (!who) {
    return;
  }
  mode = newMode;
  cancelled = false;
  refreshButtons();
  fill(result);
  delete result.dataset.outcome;
  delete result.dataset.reason;
  try {
    await job(who);
  } finally {
    mode = "idle";
    show(stepBox, false);
    show(progressBox, false);
    refreshButtons();
    result.focus();
  }
}

// ------------------------------------------------------------------------------------------ enrol

async function enrol(who) {
  const photos = [];
  let severalFaces = 0;
  const deadline = performance.now() + ENROL_TIMEOUT_MS;
  while (photos.length < ENROL_PHOTOS && performance.now() < deadline && !cancelled) {
    const frame = await grabFrame(video, canvas, 0.92);
    let check;
    try {
      check = await checkFrame(frame);
    } catch (error) {
      showError("Could not enrol", error);
      return;
    }
    showCheck(check);
    severalFaces = check.guidance === "multiple_faces" ? severalFaces + 1 : 0;
    // A good frame, or a frame whose only problem is a second face (the person chooses theirs).
    if (check.guidance === null || severalFaces >= MULTIPLE_FACES_PATIENCE) {
      photos.push({ blob: frame.blob, name: `camera-${photos.length + 1}.jpg` });
      severalFaces = 0;
      say(`Captured ${photos.length} of ${ENROL_PHOTOS}.`);
      await sleep(ENROL_SPACING_MS);
    } else {
      await sleep(GUIDANCE_PAUSE_MS);
    }
  }
  if (cancelled) {
    fill(result, el("p", {}, "Cancelled."));
    return;
  }
  if (!photos.length) {
    fill(result, el("h2", {}, "Nothing was enrolled"), el("p", {}, "No good frame in 30 seconds: follow the guidance under the picture."));
    result.dataset.outcome = "error";
    return;
  }
  say(`Enrolling ${photos.length} photos…`);
  try {
    const outcome = await enrolWithChoice(result, who, photos);
    showEnrolment(result, outcome);
    result.dataset.outcome = outcome.enrolled.length ? "enrolled" : "rejected";
  } catch (error) {
    showError("Could not enrol", error);
  }
}

// ----------------------------------------------------------------------------------------- verify

/** The burst's timeline: a neutral start, then one segment per step. */
function plan(challenge) {
  const rate = challenge.frame_rate ?? BURST_DEFAULTS.frame_rate;
  const neutral = challenge.neutral_s ?? BURST_DEFAULTS.neutral_s;
  const perStep = challenge.step_s ?? BURST_DEFAULTS.step_s;
  const segments = [{ step: null, start: 0, end: neutral }];
  challenge.steps.forEach((step, index) => {
    segments.push({ step, index, start: neutral + index * perStep, end: neutral + (index + 1) * perStep });
  });
  const seconds = segments[segments.length - 1].end;
  const frames = Math.min(challenge.max_frames ?? BURST_DEFAULTS.max_frames, Math.round(seconds * rate));
  return { rate, segments, seconds, frames };
}

function showSegment(segment, total, elapsed, burst) {
  show(stepBox, true);
  show(progressBox, true);
  const within = Math.min(1, (elapsed - segment.start) / (segment.end - segment.start));
  if (segment.step === null) {
    stepArrow.textContent = "◎";
    fill(stepWords, "Look straight at the camera");
    fill(progressLabel, "Get ready");
    stepBox.dataset.step = "neutral";
  } else {
    const shown = stepDisplay(segment.step);
    stepArrow.textContent = shown.arrow;
    fill(stepWords, shown.words);
    fill(progressLabel, `Step ${segment.index + 1} of ${total}`);
    stepBox.dataset.step = segment.step;
  }
  progress.value = within;
  progress.setAttribute("aria-valuetext", `${Math.round(100 * (elapsed / burst))} % of the recording`);
}

async function verify(who) {
  let challenge;
  try {
    const form = new FormData();
    form.append("user_id", who);
    challenge = await api("/liveness/challenge", { method: "POST", form });
  } catch (error) {
    showError("Could not verify", error);
    return;
  }
  const timeline = plan(challenge);
  overlay.replaceChildren();
  say(`Follow ${challenge.steps.length} steps on the screen.`);
  const frames = [];
  const started = performance.now();
  for (let i = 0; i < timeline.frames && !cancelled; i += 1) {
    const due = started + (1000 * i) / timeline.rate;
    const wait = due - performance.now();
    if (wait > 0) {
      await sleep(wait);
    }
    const elapsed = (performance.now() - started) / 1000;
    const segment = timeline.segments.find((s) => elapsed < s.end) ?? timeline.segments.at(-1);
    showSegment(segment, challenge.steps.length, elapsed, timeline.seconds);
    frames.push((await grabFrame(video, canvas, 0.9)).blob);
  }
  show(stepBox, false);
  if (cancelled) {
    fill(result, el("p", {}, "Cancelled."));
    return;
  }
  say("Checking…");
  fill(progressLabel, "Checking");
  const form = new FormData();
  form.append("user_id", who);
  form.append("challenge_id", challenge.challenge_id);
  frames.forEach((blob, index) => form.append("frames", blob, `f${String(index).padStart(3, "0")}.jpg`));
  let answer;
  try {
    answer = await api("/verify", { method: "POST", form });
  } catch (error) {
    showError("Could not verify", error);
    return;
  }
  showDecision(who, answer, frames.length);
  say("The camera is on.");
}

function showDecision(who, answer, sent) {
  const live = answer.liveness;
  let title;
  let words;
  let reason;
  if (answer.verified) {
    title = "Verified";
    words = `Welcome, ${who}.`;
    reason = "verified";
  } else if (live && !live.passed) {
    title = "Not verified";
    words = `${livenessWords(live.reason)}.`;
    reason = live.reason;
  } else {
    title = "Not verified";
    words = `The face did not match the photos enrolled for ${who}.`;
    reason = "not_the_user";
  }
  const scores =
    answer.best_similarity !== null && answer.best_similarity !== undefined
      ? el("p", { class: "scores" }, `Best similarity ${answer.best_similarity.toFixed(3)}, ${answer.votes} of ${answer.comparisons} photos voted.`)
      : null;
  fill(
    result,
    el("h2", {}, title),
    el("p", { class: "decision-words" }, words),
    live ? el("p", { class: "help" }, `${sent} frames sent, a face in ${live.frames_with_face}; steps asked: ${live.steps.map((s) => stepDisplay(s).words.toLowerCase()).join("; ")}.`) : null,
    scores,
    reason !== "verified" ? el("p", { class: "code" }, `(${reason})`) : null,
  );
  result.dataset.outcome = answer.verified ? "verified" : "not_verified";
  result.dataset.reason = reason;
}

cameraButton.addEventListener("click", toggleCamera);
enrolButton.addEventListener("click", () => run("enrol", enrol));
verifyButton.addEventListener("click", () => run("verify", verify));
cancelButton.addEventListener("click", () => {
  cancelled = true;
});
byId("person-form").addEventListener("submit", (event) => event.preventDefault());

keyPanel((who) => {
  principal = who;
  refreshButtons();
});
refreshButtons();
