"""Verification as a plain domain service (no HTTP): bytes in, a decision or a DomainError out."""

from __future__ import annotations

import pytest
import service_testdata as images
from service_testdata import lfw_bytes

from service.errors import InvalidInput, NotFound, TooManyRequests
from service.verification.service import VerifyOptions, verify_image

pytestmark = pytest.mark.lfw


def test_verify_image_decides_and_raises_domain_errors(client, settings) -> None:
    bush = lfw_bytes("George_W_Bush", 1)
    engine, factory = client.app.state.face_engine, client.app.state.session_factory
    keyring = client.app.state.store.keyring
    with factory() as session:
        with pytest.raises(NotFound) as unknown:
            verify_image(session, engine, settings, keyring, "bush", bush, VerifyOptions())
        assert unknown.value.reason == "unknown_user"
    assert (
        client.post("/enroll", data={"user_id": "bush"}, files=[("images", ("a.jpg", bush))]).status_code
        == 201
    )
    with factory() as session:
        result = verify_image(session, engine, settings, keyring, "bush", bush, VerifyOptions())
        assert result.decision.verified and result.decision.comparisons == 1 and len(result.box) == 4
        assert result.model_version == "tiny-test-1" and result.locked_for_s is None
        for data, options, error, reason in (
            (b"not an image", VerifyOptions(), InvalidInput, "not_an_image"),
            (images.blank(), VerifyOptions(), InvalidInput, "no_face"),
            (bush, VerifyOptions(detection_threshold=-5.0), InvalidInput, "threshold_below_floor"),
        ):
            with pytest.raises(error) as raised:
                verify_image(session, engine, settings, keyring, "bush", data, options)
            assert raised.value.reason == reason
        blair = lfw_bytes("Tony_Blair", 1)
        outcomes = [
            verify_image(session, engine, settings, keyring, "bush", blair, VerifyOptions()) for _ in range(5)
        ]
        assert [o.decision.verified for o in outcomes] == [False] * 5 and outcomes[-1].locked_for_s == 60
        with pytest.raises(TooManyRequests) as locked:
            verify_image(session, engine, settings, keyring, "bush", bush, VerifyOptions())
        assert locked.value.reason == "locked_out" and locked.value.retry_after_s
