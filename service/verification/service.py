"""Verification as a domain service: user id + image bytes + options in, a decision out.

Knows nothing of HTTP: failures are `DomainError`s (mapped to statuses in service/http/errors.py).
The vote rule itself stays the pure `faceverify.decision.decide`; this module gathers its inputs
(stored embeddings of the served model, the probe's embedding), applies the verify lockout around
it and reports what the route and the audit trail need. Variants (a target FAR, a liveness
challenge over frames) add fields to `VerifyOptions` or reuse `probe_embedding` / `score_probe`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from faceverify.decision import (
    Decision,
    RequestThresholds,
    TargetFarError,
    ThresholdError,
    Thresholds,
    decide,
    resolve_request_thresholds,
)
from faceverify.selection import select_verify_face
from service.errors import Conflict, InvalidInput
from service.faces.engine import FaceEngine
from service.faces.images import Upload, decode, rejection
from service.liveness.challenges import consume_challenge, earlier_burst_hashes, remember_burst
from service.liveness.service import LivenessResult, judge_burst, read_frames
from service.runtime import metrics
from service.runtime.config import Settings
from service.security import lockout
from service.storage.crypto import KeyRing
from service.storage.tables import UNREADABLE_ERRORS, Image, User, open_embedding, unreadable_reason
from service.users.service import require_user

log = logging.getLogger("faceverify.storage")


@dataclass(frozen=True)
class VerifyOptions:
    """What a request may choose: a calibrated false-accept level (`target_far`, the card's default
    when None), and thresholds that may only tighten it (see resolve_request_thresholds)."""

    detection_threshold: float | None = None
    verification_threshold: float | None = None
    target_far: float | None = None


@dataclass(frozen=True)
class Probe:
    """The probe photo's chosen face, its embedding, and how many faces the photo had."""

    embedding: np.ndarray
    face: Any
    faces_found: int

    @property
    def box(self) -> list[int]:
        return [int(v) for v in self.face.box]


@dataclass(frozen=True)
class VerifyResult:
    user_id: str
    decision: Decision
    thresholds: Thresholds
    target_far: float | None
    box: list[int]
    face: Any | None  # the probe's face (its quality is reported), None for a burst
    faces_found: int | None
    model_version: str
    locked_for_s: int | None  # set when this failure locked the user
    liveness: LivenessResult | None = None  # set for a burst answering a liveness challenge
    unreadable_image_ids: tuple[int, ...] = ()  # stored rows left out: they cannot be read
    operating_point: str = "default"  # the level decided at, as the metrics label it

    @property
    def verified(self) -> bool:
        """Identity, and liveness when a burst was judged."""
        return self.decision.verified and (self.liveness is None or self.liveness.passed)


@dataclass(frozen=True)
class EnrolledBank:
    """The user's readable stored embeddings of the served model, the sha256 of their photos, and
    the ids of the rows of the served model that were left out because they cannot be read."""

    vectors: np.ndarray
    sha256: set[str]
    unreadable_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class UnreadableRow:
    """A stored embedding that cannot be used: `reason` from db_models.unreadable_reason."""

    image_id: int
    reason: str


def policy_of(settings: Settings) -> lockout.LockoutPolicy:
    return lockout.LockoutPolicy(
        settings.lockout_max_failures,
        settings.lockout_window_s,
        settings.lockout_base_s,
        settings.lockout_max_s,
    )


def enrolled_embeddings(
    session: Session, keyring: KeyRing, user: User, model_version: str
) -> EnrolledBank:
    """The user's stored embeddings of `model_version`, decrypted and stacked; 409 when there are none.

    A row whose embedding cannot be read (it fails authentication: tampered, or copied from another
    row; sealed with a key this process lacks; malformed) never votes and never fails the request:
    it is left out, reported (report_unreadable), and the decision uses the rows that remain. With
    none left the answer is 409 `stored_data_unreadable`: verifying against nothing is no answer.
    """
    rows = session.execute(
        select(Image.id, Image.embedding, Image.embedding_dim, Image.sha256, Image.model_version).where(
            Image.user_pk == user.id
        )
    ).all()
    current: list[np.ndarray] = []
    unreadable: list[UnreadableRow] = []
    for image_id, blob, dim, sha, version in rows:
        if version != model_version:
            continue
        try:
            current.append(open_embedding(keyring, blob, dim, user.id, sha))
        except UNREADABLE_ERRORS as exc:
            unreadable.append(UnreadableRow(int(image_id), unreadable_reason(exc)))
    report_unreadable(user.user_id, unreadable)
    unreadable_ids = tuple(row.image_id for row in unreadable)
    if current:
        return EnrolledBank(np.stack(current), {row.sha256 for row in rows}, unreadable_ids)
    if unreadable:
        raise Conflict(
            "stored_data_unreadable",
            f"none of the {len(unreadable)} stored embedding(s) of user {user.user_id!r} can be read "
            "(changed in the database, copied from another row, sealed with a key this service does "
            "not have, or malformed), so there is nothing to verify against. Operator: "
            "`faceverify store check` lists them; `faceverify reembed` recomputes them from intact "
            "photos; re-enrolling the user (the same photos repair these rows in place) always works.",
            audit={"unreadable_images": list(unreadable_ids)},
        )
    if rows:
        versions = sorted({row.model_version for row in rows})
        raise Conflict(
            "model_version_mismatch",
            f"user {user.user_id!r} has embeddings of model version(s) {versions} only; the service runs "
            f"{model_version!r}. Run `faceverify reembed` to recompute them from the stored images.",
        )
    raise Conflict("no_enrolled_images", f"user {user.user_id!r} has no enrolled images")


def report_unreadable(user_id: str, unreadable: list[UnreadableRow]) -> None:
    """One ERROR line per request (user, image ids, reasons; no traceback, no key material) and one
    metric increment per row, so an operator is alerted without the log repeating a stack per row."""
    if not unreadable:
        return
    for row in unreadable:
        metrics.record_unreadable_embedding(row.reason)
    reasons = sorted({row.reason for row in unreadable})
    log.error(
        "stored embedding(s) of user %r cannot be read and were left out of the comparison: image ids "
        "%s (%s); run `faceverify store check`",
        user_id, [row.image_id for row in unreadable], ", ".join(reasons),
    )  # fmt: skip


def probe_embedding(engine: FaceEngine, settings: Settings, data: bytes) -> Probe:
    """Decode the probe, pick its face (the largest), embed it once."""
    rgb, reason = decode(data, settings.max_upload_bytes, settings.max_pixels)
    if rgb is None:
        raise rejection(reason or "not_an_image", "image")
    selection = select_verify_face(engine.faces(rgb))
    if selection.face is None:
        raise InvalidInput("no_face", "no face found in the image")
    return Probe(engine.embed_faces([selection.face])[0], selection.face, selection.faces_found)


def verify_image(
    session: Session,
    engine: FaceEngine,
    settings: Settings,
    keyring: KeyRing,
    user_id: str,
    data: bytes,
    options: VerifyOptions,
) -> VerifyResult:
    """Verify `data` (encoded image bytes) against `user_id`'s enrolment; counts a failure to the lockout."""
    request = _request_thresholds(engine, options)
    user = require_user(session, user_id)
    lockout.ensure_not_locked(session, user_id)
    bank = enrolled_embeddings(session, keyring, user, engine.version)
    session.rollback()  # release the read transaction before the CNN runs
    probe = probe_embedding(engine, settings, data)
    decision = decide(engine.score(probe.embedding, bank.vectors), request.thresholds)
    locked_for = _count_outcome(session, settings, user_id, decision.verified)
    return VerifyResult(
        user_id, decision, request.thresholds, request.target_far, probe.box, probe.face,
        probe.faces_found, engine.version, locked_for, unreadable_image_ids=bank.unreadable_ids,
        operating_point=request.label,
    )  # fmt: skip


def verify_burst(
    session: Session,
    engine: FaceEngine,
    settings: Settings,
    keyring: KeyRing,
    user_id: str,
    challenge_id: str,
    frames: list[Upload],
    key_name: str | None,
    options: VerifyOptions,
) -> VerifyResult:
    """Verify a burst of frames answering a liveness challenge: consumes the challenge (single use,
    bound to the user and key), judges identity and liveness (service.liveness), remembers the
    burst (replays are refused) and counts a failure of either to the lockout."""
    request = _request_thresholds(engine, options)
    user = require_user(session, user_id)
    lockout.ensure_not_locked(session, user_id)
    bank = enrolled_embeddings(session, keyring, user, engine.version)
    steps = consume_challenge(session, challenge_id, user, key_name)
    decoded = read_frames(frames, settings)
    known_sha, earlier = earlier_burst_hashes(session, user)
    session.rollback()  # no transaction held while the CNN runs
    judged = judge_burst(
        engine, decoded, steps, bank.vectors, request.thresholds, known_sha | bank.sha256, earlier
    )
    remember_burst(session, user, judged.sha256, judged.chip_hashes)
    metrics.record_liveness("passed" if judged.liveness.passed else "failed")
    passed = judged.decision.verified and judged.liveness.passed
    locked_for = _count_outcome(session, settings, user_id, passed)
    return VerifyResult(
        user_id, judged.decision, request.thresholds, request.target_far, judged.probe_box, None,
        None, engine.version, locked_for, judged.liveness, bank.unreadable_ids, request.label,
    )  # fmt: skip


def _request_thresholds(engine: FaceEngine, options: VerifyOptions) -> RequestThresholds:
    try:
        return resolve_request_thresholds(
            engine.card, options.target_far, options.detection_threshold, options.verification_threshold
        )
    except (ThresholdError, TargetFarError) as exc:
        raise InvalidInput(exc.reason, str(exc)) from exc


def _count_outcome(session: Session, settings: Settings, user_id: str, verified: bool) -> int | None:
    """A success clears the user's failures; a failure counts (seconds locked when it locked)."""
    if verified:
        lockout.record_success(session, user_id)
        return None
    return lockout.record_failure(session, policy_of(settings), user_id)
