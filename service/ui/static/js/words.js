// Plain words for the service's stable codes: liveness steps, refusal reasons, liveness reasons.
// Data-driven on purpose: a step or reason the service adds later still shows (humanised) instead
// of breaking the page; add an entry here to give it better words or an arrow.

/** Each liveness step: the arrow drawn on screen (mirror-image preview: the user's own left is
 * the screen's left) and the words read out. */
export const STEPS = {
  turn_left: { arrow: "←", words: "Turn your head to your left, then back" },
  turn_right: { arrow: "→", words: "Turn your head to your right, then back" },
  look_up: { arrow: "↑", words: "Look up, then back at the camera" },
  look_down: { arrow: "↓", words: "Look down, then back at the camera" },
  move_closer: { arrow: "⇲", words: "Move closer to the camera, then back" },
  // Held long enough (~1/2 s) that a 6 frames/s burst sees the eyes closed (docs/liveness.md).
  blink: { arrow: "◡", words: "Close your eyes for a moment, then open them" },
  open_mouth: { arrow: "○", words: "Open your mouth, then close it" },
};

/** `some_code` -> "Some code". */
export function humanise(code) {
  const text = String(code).replace(/[_:.-]+/g, " ").trim();
  return text ? text[0].toUpperCase() + text.slice(1) : "";
}

/** The display of a step: known steps from STEPS, any other a neutral marker and its humanised name. */
export function stepDisplay(step) {
  return STEPS[step] ?? { arrow: "•", words: humanise(step) };
}

/** Guidance before capture, from the frame check's reason (null = good). */
export const GUIDANCE = {
  no_face: "No face found: look at the camera",
  multiple_faces: "More than one face: only one person in front of the camera, please",
  face_too_small: "Too far: come closer to the camera",
  too_dark: "Too dark: turn towards a light",
  too_bright: "Too bright: move away from the strong light",
  blurry: "Hold still: the picture is blurred",
  pose_too_far: "Turn towards the camera and look straight at it",
  low_confidence: "Face not clear: look straight at the camera in good light",
};

/** Refusals (HTTP errors and per-image rejections). */
export const REASONS = {
  ...GUIDANCE,
  not_an_image: "That file is not an image",
  unsupported_format: "That image format is not supported",
  image_too_small: "The image is too small",
  bad_aspect_ratio: "The image is too long and thin",
  too_large: "The image is too large",
  too_many_pixels: "The image has too many pixels",
  empty: "The file is empty",
  unknown_user: "Nobody is enrolled under this user id",
  invalid_user_id: "A user id is 1 to 64 letters, digits, dots, dashes or underscores",
  locked_out: "Too many failed attempts for this user: try again later",
  rate_limited: "Too many requests: wait a moment",
  missing_api_key: "Enter an API key first",
  invalid_api_key: "This API key is unknown or was revoked",
  insufficient_scope: "This API key may not do that",
  liveness_required: "This service verifies only with a liveness check",
  unknown_challenge: "The liveness challenge is unknown: start again",
  challenge_used: "That liveness challenge was already answered: start again",
  challenge_expired: "The liveness challenge timed out: start again",
  challenge_user_mismatch: "That challenge was issued for another user",
  challenge_key_mismatch: "That challenge was issued to another key",
  too_few_frames: "Too few frames were recorded: start again",
  too_many_files: "Too many frames were sent",
  model_version_mismatch: "This user's photos were enrolled with another model: ask an operator",
  stored_data_unreadable: "This user's stored data cannot be read: ask an operator",
  image_quota_exceeded: "This user has as many photos as allowed",
  byte_quota_exceeded: "This user's photos take all the space allowed",
  key_exists: "A key with this name already exists",
  unknown_key: "No key has this name",
  invalid_key_name: "A key name is 1 to 64 letters, digits, dots, dashes or underscores",
  invalid_scopes: "Choose at least one scope",
  invalid_face_choice: "That face choice does not match a face in the photo",
  no_usable_image: "No photo could be enrolled",
  overloaded: "The service is busy: try again in a moment",
  unreachable: "The service did not answer: check the connection",
};

/** Liveness reasons, `<check>:<why>` or a bare code. */
export const LIVENESS = {
  face_lost: "Your face left the picture during the check",
  "steps:steps_not_done": "We did not see the movements that were asked",
  "steps:wrong_order": "The movements were not made in the order asked",
  "steps:no_neutral_start": "Start by looking straight at the camera and keeping still",
  "steps:too_few_frames": "Too few frames showed your face",
  "depth:planar_motion": "The face moved like a flat picture, not a head",
  "depth:too_few_frames": "Too few frames showed your face",
  "rigidity:planar_motion": "The face moved like a flat picture, not a head",
  "rigidity:too_few_frames": "Too few frames showed your face",
  "duplicates:repeated_frame": "The same frame was sent twice",
  "continuity:not_the_user": "Some frames did not show the same person",
  "continuity:landmark_jump": "The face jumped between frames",
  "continuity:embedding_jump": "The face changed during the check",
  "fresh:replayed_bytes": "These frames were sent before (a replay)",
  "fresh:replayed_burst": "These frames look like an earlier attempt (a replay)",
  "fresh:enrolment_photo": "These frames look like an enrolment photo",
};

export function reasonWords(reason) {
  return REASONS[reason] ?? humanise(reason);
}

export function livenessWords(reason) {
  if (LIVENESS[reason]) {
    return LIVENESS[reason];
  }
  const [check, why] = String(reason).split(":", 2);
  return why ? `The ${check} check failed: ${humanise(why).toLowerCase()}` : humanise(reason);
}

/** "1e-4" style label of a false-accept rate. */
export function farLabel(far) {
  const exponent = Math.round(Math.log10(far));
  return Math.abs(far - 10 ** exponent) / far < 1e-6 ? `1 in ${(10 ** -exponent).toLocaleString("en")}` : String(far);
}
