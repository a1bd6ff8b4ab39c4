"""Make the photo store and the database agree again after a crash (run at start-up and by CLI).

What can be out of step, and what is done about it (each per user directory, under that user's
lock, so a live enrolment or delete in another process is never disturbed):

* temp files (".tmp-*") of writes that never finished -> removed;
* files without a row (an enrolment that died before its commit, a delete that died after its
  commit) -> removed;
* rows whose photo file is missing (only possible for data from before this ordering, or a file
  removed by hand) -> the row is dropped: it cannot be re-embedded or audited, and must not keep
  voting. Each one is logged and listed in the report (`faceverify store check`).
* with `check_blobs` (`faceverify store check`, not the start-up repair: it reads every photo):
  rows whose stored embedding or photo cannot be read (fails authentication: changed, or copied
  from another row; sealed with a key this process lacks; malformed) -> reported, never changed.
  Verify already leaves such rows out; deleting them is not automatic because a key missing from
  the configuration fails the same way, and would then delete every user's data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from service.storage.crypto import DecryptionError
from service.storage.locks import lock_user_dir
from service.storage.photos import TEMP_PREFIX, ImageStore, user_dir_name
from service.storage.tables import UNREADABLE_ERRORS, Image, User, open_embedding, unreadable_reason

log = logging.getLogger("faceverify.storage")


@dataclass
class RepairReport:
    temp_files_removed: list[str] = field(default_factory=list)
    orphan_files_removed: list[str] = field(default_factory=list)
    rows_dropped: list[tuple[int, str, str]] = field(default_factory=list)  # (image id, user_id, path)
    # (image id, user_id, "embedding" or "photo", reason): reported only, never repaired here.
    unreadable: list[tuple[int, str, str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.repairable or self.unreadable)

    @property
    def repairable(self) -> bool:
        return bool(self.temp_files_removed or self.orphan_files_removed or self.rows_dropped)

    def merge(self, other: RepairReport) -> None:
        self.temp_files_removed += other.temp_files_removed
        self.orphan_files_removed += other.orphan_files_removed
        self.rows_dropped += other.rows_dropped
        self.unreadable += other.unreadable

    def repair_lines(self) -> list[str]:
        """What the repair removes or drops (or would, in a dry run)."""
        out = [f"removed temp file {p}" for p in self.temp_files_removed]
        out += [f"removed file without a database row {p}" for p in self.orphan_files_removed]
        out += [
            f"dropped image {i} of user {u!r}: its photo file {p} is missing" for i, u, p in self.rows_dropped
        ]
        return out

    def unreadable_lines(self) -> list[str]:
        """Rows an operator must look at: what is unreadable, why, and the way out."""
        remedy = {
            "embedding": "`faceverify reembed` recomputes it from the photo",
            "photo": "re-enrolling that photo writes it again; without it, delete this image",
        }
        return [
            f"image {i} of user {u!r}: its stored {what} cannot be read ({reason}); verify leaves it "
            f"out, nothing was changed: {remedy[what]}"
            for i, u, what, reason in self.unreadable
        ]

    def lines(self) -> list[str]:
        return self.repair_lines() + self.unreadable_lines()


def repair_dir(
    session: Session,
    store: ImageStore,
    dir_name: str,
    *,
    apply: bool = True,
    log_findings: bool = True,
    check_blobs: bool = False,
) -> RepairReport:
    """Bring one user directory and its rows into agreement (one locked transaction).

    A delete calls this to remove the files it just orphaned (`log_findings=False`: expected).
    `check_blobs` also opens every embedding and photo of the directory's rows (see module doc)."""
    report = RepairReport()
    if session.in_transaction():
        session.commit()
    try:
        lock_user_dir(session, dir_name)
        rows = _rows_of_dir(session, dir_name)
        expected = {path.split("/", 1)[1] for _, _, path, kept in rows if kept and "/" in path}
        for name in store.dir_entries(dir_name):
            relative = f"{dir_name}/{name}"
            if name.startswith(TEMP_PREFIX):
                report.temp_files_removed.append(relative)
            elif name not in expected:
                report.orphan_files_removed.append(relative)
            else:
                continue
            if apply:
                store.delete(relative)
        missing = [(i, u, p) for i, u, p, kept in rows if kept and not store.exists(p)]
        report.rows_dropped += missing
        if check_blobs:
            report.unreadable += _unreadable_blobs(session, store, dir_name, {i for i, _, _ in missing})
        if apply and missing:
            session.execute(delete(Image).where(Image.id.in_([i for i, _, _ in missing])))
        if apply and not rows:
            store.remove_dir_if_empty(dir_name)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    for line in report.lines() if log_findings else []:
        log.warning("store repair: %s", line)
    return report


def _rows_of_dir(session: Session, dir_name: str) -> list[tuple[int, str, str, bool]]:
    """(image id, user_id, path, photo_stored) of the rows whose files live in `dir_name`."""
    rows = session.execute(
        select(Image.id, User.user_id, Image.path, Image.photo_stored)
        .join(User)
        .where(User.store_dir == dir_name)
    )
    return [(int(i), str(u), str(p), bool(k)) for i, u, p, k in rows]


def _unreadable_blobs(
    session: Session, store: ImageStore, dir_name: str, skip: set[int]
) -> list[tuple[int, str, str, str]]:
    """(image id, user_id, "embedding" | "photo", reason) for each blob of the directory's rows that
    cannot be read; rows in `skip` (being dropped for a missing file) are not looked at."""
    rows = session.execute(
        select(
            Image.id, User.user_id, Image.user_pk, Image.sha256, Image.embedding, Image.embedding_dim,
            Image.path, Image.photo_stored,
        ).join(User).where(User.store_dir == dir_name).order_by(Image.id)
    )  # fmt: skip
    found: list[tuple[int, str, str, str]] = []
    for image_id, user_id, user_pk, sha256, blob, dim, path, kept in rows:
        if image_id in skip:
            continue
        try:
            open_embedding(store.keyring, blob, dim, user_pk, sha256)
        except UNREADABLE_ERRORS as exc:
            found.append((int(image_id), str(user_id), "embedding", unreadable_reason(exc)))
        if kept and store.exists(path):
            try:
                store.read_photo(path, user_pk, sha256)
            except DecryptionError as exc:
                found.append((int(image_id), str(user_id), "photo", exc.reason))
    return found


def repair_store(
    session_factory: sessionmaker[Session],
    store: ImageStore,
    *,
    apply: bool = True,
    check_blobs: bool = False,
) -> RepairReport:
    """Every directory on disk and every user in the database; what start-up and the CLI run."""
    report = RepairReport()
    with session_factory() as session:
        for user in session.scalars(select(User).where(User.store_dir.is_(None))):
            user.store_dir = user_dir_name(user.user_id)  # users made by code that did not set it
        session.commit()
        dirs = set(store.dir_names())
        dirs |= {d for d in session.scalars(select(User.store_dir)) if d}
        session.rollback()
        for dir_name in sorted(dirs):
            report.merge(repair_dir(session, store, dir_name, apply=apply, check_blobs=check_blobs))
    if report.clean:
        log.info("store check: photo store and database agree")
    return report
