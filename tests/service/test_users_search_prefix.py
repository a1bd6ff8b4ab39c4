"""A key restricted to a user-id prefix searches only inside it (GET /users?q=...)."""

from __future__ import annotations

import pytest

from service.users.routes import _search_prefix


@pytest.mark.parametrize(
    ("q", "key_prefix", "expected"),
    [
        (None, None, None),  # an unrestricted key, no search: everyone
        ("ali", None, "ali"),  # an unrestricted key searches where it likes
        (None, "kiosk1-", "kiosk1-"),  # a restricted key sees its own users
        ("kiosk1-a", "kiosk1-", "kiosk1-a"),  # a search inside its prefix narrows it
        ("kio", "kiosk1-", "kiosk1-"),  # a search wider than its prefix stays inside it
    ],
)
def test_the_search_stays_within_the_keys_prefix(
    q: str | None, key_prefix: str | None, expected: str | None
) -> None:
    assert _search_prefix(q, key_prefix) == expected


def test_a_search_outside_the_keys_prefix_matches_no_user_id() -> None:
    prefix = _search_prefix("kiosk2-", "kiosk1-")
    assert prefix is not None and prefix.startswith("kiosk1-") and "/" in prefix  # no user id has a slash
