"""Key rotation: re-encrypt every stored photo and embedding under the current key, crash-safely.

`faceverify encryption rotate` with the key file: a new key is added to the file as the current one
while the old keys stay in it (readable), everything is re-sealed user by user, and only when no
blob needs an old key any more are the old keys dropped from the file. With
FACEVERIFY_ENCRYPTION_KEY: the operator sets the new key there and the old one(s) in
FACEVERIFY_ENCRYPTION_OLD_KEYS; the command re-seals everything under the new key.

Crash safety: each file is replaced atomically (temp -> fsync -> rename), each user's rows are
re-sealed in one transaction under the user's lock (so enrolments and deletes take turns with it),
and the old keys are dropped last. A crash at any point leaves every blob sealed under a key that
is still in the ring; rerunning the command resumes (it does not start another rotation while the
key file still holds retired keys). Legacy plaintext (data from before encryption) is sealed too.

A blob that cannot be opened (changed in the database or the store, copied from another row) is
skipped and reported, never re-sealed, and the old keys are then kept in the key file: the command
exits 1 and a rerun after the repair (`faceverify reembed`, or re-enrolling the user) finishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.storage.crypto import (
    DecryptionError,
    KeyFile,
    KeyRing,
    embedding_aad,
    key_id_of,
    new_key_text,
    parse_key,
    sealed_key_id,
)
from service.storage.locks import lock_user_dir
from service.storage.photos import ImageStore
from service.storage.tables import Image, User


@dataclass
class RotationReport:
    key_id: str
    resumed: bool = False
    files_resealed: int = 0
    embeddings_resealed: int = 0
    retired_keys: tuple[str, ...] = ()
    unreadable: list[tuple[int, str, str]] = field(default_factory=list)  # (image id, what, reason)


def begin_file_rotation(keyring: KeyRing) -> tuple[str, bool]:
    """Make a new current key in the key file (old ones kept); resume if one is pending."""
    path = keyring.key_file
    assert path is not None, "begin_file_rotation needs a key-file key ring"
    key_file = KeyFile.read(path)
    if len(key_file.keys) > 1:
        return key_file.current, True
    text = new_key_text()
    new_id = key_id_of(parse_key(text))
    KeyFile(new_id, {**key_file.keys, new_id: text}).write(path)
    keyring.refresh()
    return new_id, False


def finish_file_rotation(keyring: KeyRing) -> tuple[str, ...]:
    """Drop every key but the current one from the key file (only once nothing needs them)."""
    path = keyring.key_file
    assert path is not None
    key_file = KeyFile.read(path)
    retired = tuple(k for k in key_file.keys if k != key_file.current)
    KeyFile(key_file.current, {key_file.current: key_file.keys[key_file.current]}).write(path)
    keyring.refresh()
    return retired


def reseal_all(session_factory: sessionmaker[Session], store: ImageStore, report: RotationReport) -> None:
    """Re-seal every blob not under the keyring's current key (one locked transaction per user)."""
    keyring = store.keyring
    with session_factory() as session:
        users = session.execute(select(User.id, User.store_dir)).all()
        session.rollback()
        for user_pk, store_dir in users:
            try:
                lock_user_dir(session, str(store_dir))
                rows = session.execute(
                    select(Image.id, Image.sha256, Image.path, Image.photo_stored, Image.embedding).where(
                        Image.user_pk == user_pk
                    )
                ).all()
                current = keyring.current_id
                for image_id, sha256, path, photo_stored, blob in rows:
                    if photo_stored and store.exists(path):
                        _reseal_file(store, report, image_id, path, user_pk, sha256)
                    if sealed_key_id(blob) != current:
                        _reseal_embedding(session, keyring, report, image_id, blob, user_pk, sha256)
                    else:
                        session.execute(update(Image).where(Image.id == image_id).values(key_id=current))
                session.commit()
            except BaseException:
                session.rollback()
                raise


def _reseal_file(
    store: ImageStore, report: RotationReport, image_id: int, path: str, user_pk: int, sha256: str
) -> None:
    """Re-seal one photo file; an unreadable one is reported and left as it is."""
    try:
        if store.reseal(path, user_pk, sha256):
            report.files_resealed += 1
    except DecryptionError as exc:
        report.unreadable.append((int(image_id), "photo", exc.reason))


def _reseal_embedding(
    session: Session, keyring: KeyRing, report: RotationReport, image_id: int, blob: bytes,
    user_pk: int, sha256: str,
) -> None:  # fmt: skip
    """Re-seal one embedding under the current key; an unreadable one is reported and left as it is."""
    aad = embedding_aad(user_pk, sha256)
    try:
        plaintext = keyring.open(blob, aad)
    except DecryptionError as exc:
        report.unreadable.append((int(image_id), "embedding", exc.reason))
        return
    session.execute(
        update(Image)
        .where(Image.id == image_id)
        .values(embedding=keyring.seal(plaintext, aad), key_id=keyring.current_id)
    )
    report.embeddings_resealed += 1


def rotate(session_factory: sessionmaker[Session], store: ImageStore) -> RotationReport:
    keyring = store.keyring
    if keyring.key_file is None:
        report = RotationReport(keyring.current_id)
        reseal_all(session_factory, store, report)
        return report
    key_id, resumed = begin_file_rotation(keyring)
    report = RotationReport(key_id, resumed=resumed)
    reseal_all(session_factory, store, report)
    if not report.unreadable:  # else an old key may be all that could still read them
        report.retired_keys = finish_file_rotation(keyring)
    return report
