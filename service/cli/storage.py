"""`faceverify encryption rotate` and `faceverify store check` ."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from service.cli.common import add_storage_options, open_database, print_group_help, settings_from
from service.runtime.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from service.storage.photos import ImageStore


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    encryption = subparsers.add_parser("encryption", help="encryption at rest of photos and embeddings")
    enc_sub = encryption.add_subparsers(dest="encryption_command", metavar="ENCRYPTION_COMMAND")
    rotate = enc_sub.add_parser(
        "rotate",
        help="re-encrypt every stored photo and embedding under a new key (key file) or under "
        "FACEVERIFY_ENCRYPTION_KEY; crash-safe, rerun to resume",
    )
    add_storage_options(rotate)
    rotate.set_defaults(func=cmd_rotate)
    print_group_help(encryption)

    store = subparsers.add_parser("store", help="photo store maintenance")
    store_sub = store.add_subparsers(dest="store_command", metavar="STORE_COMMAND")
    check = store_sub.add_parser(
        "check",
        help="report where the photo store and the database disagree (temp files, files without "
        "rows, rows without files) and stored embeddings or photos that cannot be read (tampered, "
        "copied from another row, unknown key); --repair fixes the former as the service does at "
        "start-up and never touches the latter",
    )
    add_storage_options(check)
    check.add_argument("--repair", action="store_true", help="remove/drop what is reported")
    check.set_defaults(func=cmd_store_check)
    print_group_help(store)


@contextmanager
def _open(settings: Settings) -> Iterator[tuple[sessionmaker[Session], ImageStore]]:
    from service.storage.database import make_session_factory
    from service.storage.setup import open_storage

    _keyring, store = open_storage(settings)
    with open_database(settings) as engine:
        yield make_session_factory(engine), store


def cmd_rotate(args: argparse.Namespace) -> int:
    from service.storage.rotation import rotate

    with _open(settings_from(args)) as (session_factory, store):
        report = rotate(session_factory, store)
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
    from service.storage.recovery import repair_store

    with _open(settings_from(args)) as (session_factory, store):
        report = repair_store(session_factory, store, apply=args.repair, check_blobs=True)
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
