"""Which photo store belongs to which database: an identity written into both, checked at start.

Why (issue 18): a replica started on the shared database with an empty data directory (volume not
mounted, wrong DATA_DIR) saw every row's photo "missing" and its start-up repair dropped them all.
Now the database's `store_identity` row and the store's marker file `.faceverify-store-id` carry
the same random id, written together when both are new. A store without the marker, or with another
id, makes the replica NOT READY with a reason that says so (`StoreGuard.problem()`), and nothing
is repaired from it. Re-checked on every readiness probe and data request (a small file read), so
mounting the right volume makes the replica ready without a restart.

A database from before 0006 (no row yet) adopts its store when the store plausibly is its own: no
marker, and either no row has a photo or at least one row's photo file is there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.storage.crypto import KeyRing, fsync_dir
from service.storage.photos import ImageStore
from service.storage.tables import Image, StoreIdentity

log = logging.getLogger("faceverify.storage")

MARKER_NAME = ".faceverify-store-id"
_SAMPLE_ROWS = 50  # photo rows looked at to decide whether an unmarked store is this database's


def marker_path(store: ImageStore) -> Path:
    return store.root / MARKER_NAME


def read_marker(store: ImageStore) -> str | None:
    """The store's identity, or None when the marker (or the whole store) is absent."""
    try:
        return marker_path(store).read_text(encoding="ascii").strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return f"<unreadable marker: {type(exc).__name__}>"


def _write_marker(store: ImageStore, store_id: str) -> None:
    """Create the marker exclusively (never overwrite another database's), durably."""
    store.ensure_root()
    fd = os.open(marker_path(store), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(store_id + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(store.root)


class StoreGuard:
    """The identity this replica expects of its store, and whether the store on disk has it."""

    def __init__(self, store: ImageStore, check: bool = True):
        """`check=False` (embeddings-only: FACEVERIFY_STORE_PHOTOS=false, where each replica may
        have a store of its own, e.g. an emptyDir, and no photo is read from it): nothing to bind."""
        self.store = store
        self.check = check
        self.expected: str | None = None
        self._problem: str | None = None  # found at start-up, before any expected id is known

    def establish(self, session_factory: sessionmaker[Session]) -> str | None:
        """Start-up: create the identity (new database and store), adopt an unmarked store of a
        database from before 0006, or learn the database's identity; returns the problem, if any."""
        if not self.check:
            return None
        with session_factory() as session:
            if not inspect(session.get_bind()).has_table(StoreIdentity.__tablename__):
                log.warning("database schema is older than 0006: the photo store's identity is not checked")
                return None
            for _ in range(3):  # a replica starting beside us may create the row first (retried)
                try:
                    self._problem = self._establish(session)
                    break
                except IntegrityError:
                    session.rollback()
        problem = self.problem()
        if problem:
            log.error("photo store not usable, replica not ready: %s", problem)
        return problem

    def _establish(self, session: Session) -> str | None:
        row = session.scalar(select(StoreIdentity).where(StoreIdentity.id == 1))
        if row is not None:
            self.expected = row.store_id
            session.rollback()
            return None
        # Claim the row first: a replica creating it at the same moment makes this flush wait for
        # its commit and then fail (IntegrityError, retried: the row is then read above), so a
        # marker it has just written is never mistaken for another database's.
        session.rollback()  # the insert opens the write transaction (SQLite then waits, not fails)
        store_id = secrets.token_hex(16)
        session.add(StoreIdentity(id=1, store_id=store_id))
        session.flush()
        marker = read_marker(self.store)
        if marker is not None:
            session.rollback()
            return (
                f"the photo store {self.store.root} carries identity {marker!r}, which this database does "
                "not know: it is another database's store (or the database was replaced); nothing was "
                "changed"
            )
        paths = list(
            session.scalars(select(Image.path).where(Image.photo_stored.is_(True)).limit(_SAMPLE_ROWS))
        )
        if paths and not any(self.store.exists(p) for p in paths):
            session.rollback()
            return (
                f"the photo store {self.store.root} has none of the photos the database lists (is the "
                "data volume mounted, is FACEVERIFY_DATA_DIR right?); nothing was changed"
            )
        _write_marker(self.store, store_id)
        try:
            session.commit()
        except BaseException:
            with contextlib.suppress(OSError):
                marker_path(self.store).unlink()
            raise
        self.expected = store_id
        log.info("photo store %s bound to this database (identity %s)", self.store.root, store_id)
        return None

    def problem(self) -> str | None:
        """None when the store on disk is this database's; else why not (cheap: one small read)."""
        if self._problem is not None:
            return self._problem
        if self.expected is None:
            return None
        marker = read_marker(self.store)
        if marker is None:
            return (
                f"the photo store {self.store.root} has no identity marker ({MARKER_NAME}) but the "
                "database expects one: the data volume is missing or not mounted, or "
                "FACEVERIFY_DATA_DIR is wrong; nothing was changed"
            )
        if marker != self.expected:
            return (
                f"the photo store {self.store.root} belongs to another database (identity {marker!r}, "
                f"this database's is {self.expected!r}); nothing was changed"
            )
        return None


def storage_problem(guard: StoreGuard, keyring: KeyRing) -> tuple[str, str] | None:
    """(reason, detail) when data routes must not run: the key file is gone, or the photo store is
    missing or another database's. Checked per readiness probe and per data request."""
    key = keyring.problem()
    if key is not None:
        return "encryption_key_unavailable", key
    store = guard.problem()
    if store is not None:
        return "store_unavailable", store
    return None
