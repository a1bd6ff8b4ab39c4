"""The audit trail: an append-only, hash-chained table of enrol, verify, delete, unlock and key events.

Each entry's `entry_hash` is SHA-256 over the previous entry's hash and this entry's canonical
fields, so changing or removing a stored row breaks the chain from that row on. The single
`audit_head` row names the last entry; appends lock and update it in the same transaction, which
serialises appends across replicas (one chain, never a fork) and makes a removed tail detectable.
Pruning (retention) deletes the oldest entries and moves the head's *anchor* to the hash of the
last pruned entry, so the remaining chain still verifies from the anchor.

Never image bytes or embeddings: callers pass only counts, thresholds, versions and reasons.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from service.storage.tables import AuditEntry, AuditHead, utcnow

SessionFactory = Callable[[], Session]


@dataclass(frozen=True)
class AuditEvent:
    action: str  # enroll, verify, delete_user, delete_image, unlock, key_create, key_revoke, audit_prune
    outcome: str  # ok, denied (verify not verified), rejected (a domain error)
    user_id: str | None = None
    key_name: str | None = None
    reason: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    client: str | None = None


def _time_text(value: dt.datetime) -> str:
    """Canonical UTC text; SQLite hands datetimes back naive, PostgreSQL aware: same text for both."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_digest(entry: AuditEntry) -> str:
    """SHA-256 over the previous hash and every stored field of the entry except its own hash."""
    fields = [
        entry.seq, _time_text(entry.time), entry.key_name, entry.user_id, entry.action, entry.outcome,
        entry.reason, entry.summary, entry.request_id, entry.client, entry.prev_hash,
    ]  # fmt: skip
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


def _lock_head(session: Session) -> AuditHead:
    """Take the chain's write lock: a no-op UPDATE of the head row (row lock on PostgreSQL, the
    database write lock on SQLite, both held to commit), then read the head."""
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_seq=AuditHead.last_seq))
    head = session.scalars(select(AuditHead).where(AuditHead.id == 1)).one()
    session.refresh(head)
    return head


def _append_locked(session: Session, head: AuditHead, event: AuditEvent) -> AuditEntry:
    entry = AuditEntry(
        seq=head.last_seq + 1,
        time=utcnow(),
        key_name=event.key_name,
        user_id=event.user_id,
        action=event.action,
        outcome=event.outcome,
        reason=event.reason,
        summary=json.dumps(event.summary, sort_keys=True, separators=(",", ":"), default=str),
        request_id=event.request_id,
        client=event.client,
        prev_hash=head.last_hash,
    )
    entry.entry_hash = entry_digest(entry)
    session.add(entry)
    head.last_seq = entry.seq
    head.last_hash = entry.entry_hash
    return entry


def append(session_factory: SessionFactory, event: AuditEvent) -> int:
    """Append one event in its own transaction (independent of the request's); returns its seq."""
    with session_factory() as session:
        head = _lock_head(session)
        entry = _append_locked(session, head, event)
        session.commit()
        return entry.seq


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    last_seq: int
    last_hash: str
    bad_seq: int | None = None
    problem: str | None = None


def verify_chain(session: Session) -> ChainReport:
    """Walk the chain from the anchor to the head; report the first entry that is changed or missing."""
    head = session.scalars(select(AuditHead).where(AuditHead.id == 1)).one()
    prev, expected, checked = head.anchor_hash, head.anchor_seq + 1, 0

    def bad(seq: int, problem: str) -> ChainReport:
        return ChainReport(False, checked, head.last_seq, head.last_hash, seq, problem)

    rows = session.scalars(
        select(AuditEntry).where(AuditEntry.seq > head.anchor_seq).order_by(AuditEntry.seq)
    ).yield_per(1000)
    for row in rows:
        if row.seq != expected:
            return bad(expected, f"entry {expected} is missing (next stored entry is {row.seq})")
        if row.prev_hash != prev:
            return bad(row.seq, f"entry {row.seq} does not chain to entry {row.seq - 1}")
        if entry_digest(row) != row.entry_hash:
            return bad(row.seq, f"entry {row.seq} was changed after it was written")
        prev, expected, checked = row.entry_hash, expected + 1, checked + 1
    if expected - 1 != head.last_seq or prev != head.last_hash:
        missing = expected if head.last_seq >= expected else head.last_seq + 1
        return bad(
            missing, f"the chain ends at entry {expected - 1} but the head names entry {head.last_seq}"
        )
    return ChainReport(True, checked, head.last_seq, head.last_hash)


def prune(session_factory: SessionFactory, older_than: dt.datetime) -> int:
    """Delete entries older than `older_than` (only an intact chain), moving the anchor; returns count."""
    with session_factory() as session:
        head = _lock_head(session)
        report = verify_chain(session)
        if not report.ok:
            raise RuntimeError(f"audit chain is broken, refusing to prune: {report.problem}")
        cutoff = session.scalar(
            select(func.max(AuditEntry.seq)).where(
                AuditEntry.seq > head.anchor_seq, AuditEntry.time < older_than
            )
        )
        if cutoff is None:
            return 0
        last = session.get(AuditEntry, cutoff)
        assert last is not None
        removed = cutoff - head.anchor_seq
        head.anchor_seq, head.anchor_hash = cutoff, last.entry_hash
        session.execute(delete(AuditEntry).where(AuditEntry.seq <= cutoff))
        _append_locked(
            session, head,
            AuditEvent("audit_prune", "ok", summary={"removed": removed, "anchor_seq": cutoff}, client="cli"),
        )  # fmt: skip
        session.commit()
        return removed


@dataclass(frozen=True)
class AuditFilter:
    user_id: str | None = None
    action: str | None = None
    outcome: str | None = None
    key_name: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def page(session: Session, filters: AuditFilter, limit: int, offset: int) -> tuple[list[AuditEntry], int]:
    """Entries matching `filters`, newest first, and how many match in all."""
    conditions = [
        column == value
        for column, value in (
            (AuditEntry.user_id, filters.user_id),
            (AuditEntry.action, filters.action),
            (AuditEntry.outcome, filters.outcome),
            (AuditEntry.key_name, filters.key_name),
        )
        if value is not None
    ]
    if filters.since is not None:
        conditions.append(AuditEntry.time >= filters.since)
    if filters.until is not None:
        conditions.append(AuditEntry.time < filters.until)
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions)) or 0
    rows = session.scalars(
        select(AuditEntry).where(*conditions).order_by(AuditEntry.seq.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), total
