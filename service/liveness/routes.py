"""POST /liveness/challenge: the server picks the head movements a live user must perform next.

The steps come from the server's CSPRNG and are stored with the user, the calling API key and an
expiry, so an attacker cannot prepare a recording for them in advance and a challenge cannot be
reused or answered for somebody else (see service.liveness.challenges).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form

from service.http.deps import SessionDep, SettingsDep, VerifyKey
from service.http.errors import USER_ID_PATTERN
from service.http.schemas import ErrorOut
from service.liveness.challenges import issue_challenge
from service.liveness.schemas import ChallengeOut
from service.users.service import require_user

router = APIRouter(tags=["liveness"])


@router.post(
    "/liveness/challenge",
    response_model=ChallengeOut,
    status_code=201,
    summary="Issue a liveness challenge: 2-3 head movements to perform in a burst of frames",
    responses={404: {"model": ErrorOut, "description": "Unknown user_id (reason unknown_user)."}},
)
def challenge(
    user_id: Annotated[str, Form(pattern=USER_ID_PATTERN, description="The user who will verify.")],
    principal: VerifyKey,
    session: SessionDep,
    settings: SettingsDep,
) -> ChallengeOut:
    """Single use, expires after FACEVERIFY_LIVENESS_CHALLENGE_TTL_S; answer it with POST /verify
    (`user_id`, `challenge_id`, `frames` in capture order)."""
    user = require_user(session, user_id)
    issued = issue_challenge(
        session, user, settings.liveness_challenge_ttl_s, principal.name, settings.liveness_move_closer
    )
    return ChallengeOut(
        challenge_id=issued.challenge_id, steps=issued.steps, expires_in_s=issued.expires_in_s
    )
