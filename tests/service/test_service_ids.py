"""An id names one row for ever: deleted ids are never handed out again (SQLite and PostgreSQL).

The defect: SQLite's plain `INTEGER PRIMARY KEY` gives a new row max(rowid)+1, so deleting the row
with the largest id frees that id for the next insert. Image 7 deleted, the next photo enrolled was
image 7 again: a client retrying its `DELETE /users/u/images/7` (its first answer lost) then removed
the new photo, and an audit entry naming image 7 named a different photo. PostgreSQL sequences never
reuse ids; with AUTOINCREMENT (migration 0005) SQLite does not either.

Real HTTP (the app with its lifespan: migrations at start-up), real LFW photos, the tiny model,
real SQLite and PostgreSQL.
"""

from __future__ import annotations

import httpx
import pytest
from conftest import Backend
from fastapi.testclient import TestClient
from service_testdata import lfw_bytes
from sqlalchemy import select

from service.storage.tables import User

pytestmark = pytest.mark.lfw

FIRST = ("George_W_Bush", 1)
NEWEST = ("George_W_Bush", 2)  # enrolled last, then deleted: its id is the largest ever handed out
AFTER = ("George_W_Bush", 3)  # enrolled after the delete
OTHER = ("Colin_Powell", 6)  # a user enrolled last, then deleted with their photos


def _enrol(client: TestClient, user_id: str, photo: tuple[str, int]) -> int:
    """Enrol one photo; its image id."""
    response = client.post(
        "/enroll", data={"user_id": user_id}, files={"images": ("p.jpg", lfw_bytes(*photo), "image/jpeg")}
    )
    assert response.status_code == 201, response.text
    [entry] = response.json()["enrolled"]
    return int(entry["image_id"])


def _image_ids(client: TestClient, user_id: str) -> list[int]:
    response = client.get(f"/users/{user_id}")
    assert response.status_code == 200, response.text
    return [int(image["image_id"]) for image in response.json()["images"]]


def _user_pk(client: TestClient, user_id: str) -> int:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        return int(session.scalars(select(User.id).where(User.user_id == user_id)).one())


def _votes(client: TestClient, user_id: str, photo: tuple[str, int]) -> tuple[int, int]:
    """(votes, comparisons) of a verify with `photo`: only the same stored photo votes (tiny model)."""
    probe = {"image": ("probe.jpg", lfw_bytes(*photo), "image/jpeg")}
    response = client.post("/verify", data={"user_id": user_id}, files=probe)
    assert response.status_code == 200, response.text
    return int(response.json()["votes"]), int(response.json()["comparisons"])


def test_a_deleted_newest_image_id_is_never_reused_and_a_retried_delete_is_404(
    client: TestClient, backend: Backend
) -> None:
    """Delete the newest image, enrol again: a new id; the retried DELETE must not hit the new photo."""
    handed_out = [_enrol(client, "u", FIRST), _enrol(client, "u", NEWEST)]
    newest = max(handed_out)
    assert client.delete(f"/users/u/images/{newest}").status_code == 200

    after = _enrol(client, "u", AFTER)
    retried: httpx.Response = client.delete(f"/users/u/images/{newest}")  # the client's retry
    assert retried.status_code == 404 and retried.json()["reason"] == "unknown_image", retried.text
    assert after not in handed_out and after > newest, (backend.name, handed_out, after)
    assert _image_ids(client, "u") == [handed_out[0], after]
    assert _votes(client, "u", AFTER) == (1, 2)  # the new photo is still there, and still votes


def test_deleting_the_newest_user_frees_neither_its_row_id_nor_its_image_ids(
    client: TestClient, backend: Backend
) -> None:
    """Users too: the embeddings' associated data names the user row (service.storage.crypto), so a reused
    users.id would make a deleted user's leftover blob authenticate for someone else."""
    first = _enrol(client, "u", FIRST)
    theirs = _enrol(client, "other", OTHER)
    other_pk = _user_pk(client, "other")
    assert client.delete("/users/other").status_code == 200

    newcomer = _enrol(client, "newcomer", AFTER)
    assert _user_pk(client, "newcomer") > other_pk, backend.name
    assert newcomer not in (first, theirs) and newcomer > theirs, (backend.name, first, theirs, newcomer)
