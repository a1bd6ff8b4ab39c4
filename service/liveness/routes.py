"""POST /liveness/challenge: the server picks the head movements a live user must perform next.

The steps come from the server's CSPRNG and are stored with the user, the calling API key and an
expiry, so an attacker cannot prepare a recording for them in advance and a challenge cannot be
reused or answered for somebody else (see service.liveness.challenges).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request

from service.http.deps import SessionDep, SettingsDep, VerifyKey
from service.http.errors import USER_ID_PATTERN
from service.http.schemas import ErrorOut
from service.liveness.challenges import (
    BURST_FRAME_RATE,
    BURST_NEUTRAL_S,
    BURST_STEP_S,
    Sweeper,
    open_challenge,
    sweep,
)
from service.liveness.schemas import ChallengeOut
from service.users.service import require_user

router = APIRouter(tags=["liveness"])


@router.post(
    "/liveness/challenge",
    response_model=ChallengeOut,
    status_code=201,
    summary="Issue a liveness challenge: an action (blink / open_mouth), a vertical step, maybe a turn",
    responses={
        404: {"model": ErrorOut, "description": "Unknown user_id (reason unknown_user)."},
        429: {
            "model": ErrorOut,
            "description": "The user is locked out (locked_out) or asked for too many challenges "
            "(challenge_rate_limited); Retry-After says when to try again.",
        },
    },
)
def challenge(
    user_id: Annotated[str, Form(pattern=USER_ID_PATTERN, description="The user who will verify.")],
    principal: VerifyKey,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> ChallengeOut:
    """Single use, expires after FACEVERIFY_LIVENESS_CHALLENGE_TTL_S; answer it with POST /verify
    (`user_id`, `challenge_id`, `frames` in capture order). One open challenge per user: a new one
    closes the previous, and each closed-unanswered (or expired) challenge counts as a failed verify
    towards the lockout; requests are limited per user (429 challenge_rate_limited)."""
    principal.require_user(user_id)
    user = require_user(session, user_id)
    issued = open_challenge(session, settings, user, principal.name).issued
    sweeper: Sweeper = request.app.state.liveness_sweeper
    if sweeper.due():  # expired challenges and old burst hashes (bounded tables, issue 18)
        sweep(session, settings.liveness_challenge_retention_s, settings.liveness_burst_retention_s)
    return ChallengeOut(
        challenge_id=issued.challenge_id,
        steps=issued.steps,
        expires_in_s=issued.expires_in_s,
        frame_rate=BURST_FRAME_RATE,
        neutral_s=BURST_NEUTRAL_S,
        step_s=BURST_STEP_S,
        max_frames=settings.liveness_max_frames,
    )
