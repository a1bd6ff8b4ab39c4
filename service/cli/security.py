"""`faceverify keys create|list|revoke` and `faceverify audit verify|prune`.

Key events are audited (key name "cli": the operator at the server's shell). `keys create` prints
the secret alone on the last line of stdout, once; it is stored only as a hash.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable

from service.cli.common import add_storage_options, open_database, print_group_help, settings_from
from service.security.audit import SessionFactory


def _with_db(args: argparse.Namespace, job: Callable[..., int]) -> int:
    """Open the database (schema brought to head, as the service does), run `job(session_factory)`."""
    from service.storage.database import make_session_factory

    with open_database(settings_from(args)) as engine:
        return job(make_session_factory(engine))


def _audit_cli(session_factory: SessionFactory, action: str, name: str, **summary: object) -> None:
    from service.security import audit

    audit.append(session_factory, audit.AuditEvent(action, "ok", key_name="cli", client="cli",
                                                   summary={"name": name, **summary}))  # fmt: skip


def cmd_keys_create(args: argparse.Namespace) -> int:
    from service.errors import DomainError
    from service.security import keys

    def job(session_factory: SessionFactory) -> int:
        try:
            scopes = keys.parse_scopes(args.scopes)
            with session_factory() as session:
                secret = keys.create_key(session, args.name, scopes)
        except DomainError as exc:
            print(f"error: {exc.detail}", file=sys.stderr)
            return 1
        _audit_cli(session_factory, "key_create", args.name, scopes=sorted(scopes))
        print(
            f"created API key {args.name!r} with scopes {','.join(sorted(scopes))}; the secret (shown once):"
        )
        print(secret)
        return 0

    return _with_db(args, job)


def cmd_keys_new_secret(_args: argparse.Namespace) -> int:
    from service.security.keys import new_secret

    print(new_secret())
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from service.security import keys

    def job(session_factory: SessionFactory) -> int:
        with session_factory() as session:
            rows = keys.list_keys(session)
        print(f"{'NAME':<24} {'SCOPES':<28} {'CREATED':<26} STATUS")
        for row in rows:
            status = "active" if row.revoked is None else f"revoked {row.revoked:%Y-%m-%d %H:%M:%S}"
            print(f"{row.name:<24} {row.scopes:<28} {row.created:%Y-%m-%d %H:%M:%S}{'':<7} {status}")
        return 0

    return _with_db(args, job)


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from service.errors import DomainError
    from service.security import keys

    def job(session_factory: SessionFactory) -> int:
        try:
            with session_factory() as session:
                keys.revoke_key(session, args.name)
        except DomainError as exc:
            print(f"error: {exc.detail}", file=sys.stderr)
            return 1
        _audit_cli(session_factory, "key_revoke", args.name)
        print(f"revoked API key {args.name!r} (refused from the next request on)")
        return 0

    return _with_db(args, job)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from service.security import audit

    def job(session_factory: SessionFactory) -> int:
        with session_factory() as session:
            report = audit.verify_chain(session)
        if not report.ok:
            print(f"audit chain BROKEN at entry {report.bad_seq}: {report.problem}", file=sys.stderr)
            print(f"bad entry: {report.bad_seq}")
            return 1
        print(f"audit chain intact: {report.checked} entries checked; head entry {report.last_seq} "
              f"hash {report.last_hash} (record it elsewhere to detect a rewritten chain)")  # fmt: skip
        return 0

    return _with_db(args, job)


def cmd_audit_prune(args: argparse.Namespace) -> int:
    from service.security import audit

    days = args.days if args.days is not None else settings_from(args).audit_retention_days
    if days <= 0:
        print("retention is 0 (keep everything): nothing pruned; pass --days or set "
              "FACEVERIFY_AUDIT_RETENTION_DAYS")  # fmt: skip
        return 0
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)

    def job(session_factory: SessionFactory) -> int:
        try:
            removed = audit.prune(session_factory, cutoff)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"pruned {removed} audit entries older than {days} days; the chain stays verifiable")
        return 0

    return _with_db(args, job)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    keys = subparsers.add_parser("keys", help="API keys: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND")
    create = keys_sub.add_parser("create", help="create a key; prints its secret on the last line (once)")
    create.add_argument("--name", required=True, help="unique name (shown in the audit trail)")
    create.add_argument("--scopes", required=True, help="comma-separated: verify,enroll,manage,admin")
    add_storage_options(create)
    create.set_defaults(func=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="list keys (names, scopes, status; never secrets)")
    add_storage_options(listing)
    listing.set_defaults(func=cmd_keys_list)
    fresh = keys_sub.add_parser(
        "new-secret", help="print a new key secret (e.g. for FACEVERIFY_ADMIN_API_KEY); stores nothing"
    )
    fresh.set_defaults(func=cmd_keys_new_secret)
    revoke = keys_sub.add_parser("revoke", help="revoke a key (refused from the next request, every replica)")
    revoke.add_argument("name")
    add_storage_options(revoke)
    revoke.set_defaults(func=cmd_keys_revoke)
    print_group_help(keys)

    audit = subparsers.add_parser("audit", help="audit trail: verify the hash chain, prune old entries")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="AUDIT_COMMAND")
    verify = audit_sub.add_parser(
        "verify", help="exit 0 if the chain is intact, 1 naming the first bad entry"
    )
    add_storage_options(verify)
    verify.set_defaults(func=cmd_audit_verify)
    prune = audit_sub.add_parser("prune", help="delete entries older than the retention (keeps an anchor)")
    prune.add_argument("--days", type=int, help="override FACEVERIFY_AUDIT_RETENTION_DAYS")
    add_storage_options(prune)
    prune.set_defaults(func=cmd_audit_prune)
    print_group_help(audit)
