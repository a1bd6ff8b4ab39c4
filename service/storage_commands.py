"""`faceverify encryption rotate` and `faceverify store check` (registered by service/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.core.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from service.store import ImageStore


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    overrides = {
        name: getattr(args, name) for name in ("data_dir", "database_url") if getattr(args, name, None)
    }
    return settings.model_copy(update=overrides) if overrides else settings


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="image store, key file, default SQLite (FACEVERIFY_DATA_DIR)"
    )
    parser.add_argument("--database-url", help="SQLAlchemy/PostgreSQL URL (FACEVERIFY_DATABASE_URL)")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    encryption = subparsers.add_parser("encryption", help="encryption at rest of photos and embeddings")
    enc_sub = encryption.add_subparsers(dest="encryption_command", metavar="ENCRYPTION_COMMAND")
    rotate = enc_sub.add_parser(
        "rotate",
        help="re-encrypt every stored photo and embedding under a new key (key file) or under "
        "FACEVERIFY_ENCRYPTION_KEY; crash-safe, rerun to resume",
    )
    _add_common(rotate)
    rotate.set_defaults(func=cmd_rotate)
    encryption.set_defaults(func=lambda _args: (encryption.print_help(), 2)[1])

    store = subparsers.add_parser("store", help="photo store maintenance")
    store_sub = store.add_subparsers(dest="store_command", metavar="STORE_COMMAND")
    check = store_sub.add_parser(
        "check",
        help="report where the photo store and the database disagree (temp files, files without "
        "rows, rows without files) and stored embeddings or photos that cannot be read (tampered, "
        "copied from another row, unknown key); --repair fixes the former as the service does at "
        "start-up and never touches the latter",
    )
    _add_common(check)
    check.add_argument("--repair", action="store_true", help="remove/drop what is reported")
    check.set_defaults(func=cmd_store_check)
    store.set_defaults(func=lambda _args: (store.print_help(), 2)[1])


def _open(settings: Settings) -> tuple[Engine, sessionmaker[Session], ImageStore]:
    from service.core.db import create_db_engine, make_session_factory, upgrade_to_head
    from service.storage_setup import open_storage

    _keyring, store = open_storage(settings)
    engine = create_db_engine(settings.sqlalchemy_url)
    upgrade_to_head(engine)
    return engine, make_session_factory(engine), store


def cmd_rotate(args: argparse.Namespace) -> int:
    from service.rotation import rotate

    engine, session_factory, store = _open(_settings(args))
    try:
        report = rotate(session_factory, store)
    finally:
        engine.dispose()
    verb = "resumed the pending rotation to" if report.resumed else "rotated to"
    print(
        f"{verb} key {report.key_id}: re-encrypted {report.files_resealed} photo file(s) and "
        f"{report.embeddings_resealed} embedding(s)"
    )
    if report.retired_keys:
        print(f"retired key(s) {', '.join(report.retired_keys)} removed from {store.keyring.key_file}")
    if report.unreadable:
        for image_id, what, reason in report.unreadable:
            print(f"unreadable: image {image_id}: its stored {what} cannot be read ({reason}); skipped")
        print(
            f"{len(report.unreadable)} blob(s) could not be re-sealed, so the old key(s) are kept: repair "
            "them (`faceverify store check` says how), then run this command again",
            file=sys.stderr,
        )
        return 1
    if store.keyring.key_file is None:
        print(
            "every blob is now sealed with FACEVERIFY_ENCRYPTION_KEY; FACEVERIFY_ENCRYPTION_OLD_KEYS can go"
        )
    return 0


def cmd_store_check(args: argparse.Namespace) -> int:
    from service.recovery import repair_store

    engine, session_factory, store = _open(_settings(args))
    try:
        report = repair_store(session_factory, store, apply=args.repair, check_blobs=True)
    finally:
        engine.dispose()
    for line in report.repair_lines():
        print(line if args.repair else f"to repair: {line}")
    for line in report.unreadable_lines():
        print(f"unreadable: {line}")
    if report.clean:
        print("photo store and database agree; every stored embedding and photo can be read")
        return 0
    fixable = len(report.repair_lines())
    if fixable:
        print(f"{'repaired' if args.repair else 'found'} {fixable} problem(s)", file=sys.stderr)
    if report.unreadable:
        print(f"{len(report.unreadable)} stored blob(s) cannot be read (see above)", file=sys.stderr)
    return 0 if args.repair and not report.unreadable else 1
