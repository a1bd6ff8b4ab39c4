"""`faceverify serve`, `faceverify db upgrade` and `faceverify reembed`.

Heavy imports (TensorFlow, uvicorn) happen inside the command functions so that `faceverify --help`
and the other subcommands stay fast.
"""

from __future__ import annotations

import argparse
import sys

from service.cli.common import add_storage_options, open_database, print_group_help, settings_from
from service.runtime.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    serve = subparsers.add_parser("serve", help="run the verification API (migrates the database first)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--log-level", default="info")
    add_storage_options(serve, model=True)
    serve.set_defaults(func=cmd_serve)

    db = subparsers.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    upgrade = db_sub.add_parser("upgrade", help="bring the schema to the newest migration (idempotent)")
    add_storage_options(upgrade)
    upgrade.set_defaults(func=cmd_db_upgrade)
    print_group_help(db)

    reembed = subparsers.add_parser(
        "reembed",
        help="recompute stored embeddings with the served model from the stored photos: after a model "
        "change, and for embeddings that cannot be read (tampered, copied from another row)",
    )
    add_storage_options(reembed, model=True)
    reembed.add_argument(
        "--all", action="store_true", help="also re-embed readable rows of the current version"
    )
    reembed.add_argument("--batch-size", type=int, default=32)
    reembed.set_defaults(func=cmd_reembed)


def _check_model(settings: Settings) -> bool:
    from faceverify.model import ModelNotFoundError, check_model_files

    try:
        check_model_files(settings.model_dir)
    except ModelNotFoundError as exc:
        print(f"faceverify: {exc}", file=sys.stderr)
        return False
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not _check_model(settings):
        return 2
    import os

    from service.app import create_app
    from service.runtime.logs import configure_logging
    from service.runtime.server import serve
    from service.storage.setup import PRIVATE_UMASK

    os.umask(PRIVATE_UMASK)  # photos, keys and the database are private to the service's user

    configure_logging(settings.log_format, args.log_level)
    # The app's lifespan migrates to head (serialised across replicas) before taking traffic.
    # service.runtime.server says why this is uvicorn with a guarded protocol, and which limits it sets.
    serve(create_app(settings), settings, args.host, args.port, args.log_level)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from service.storage.database import current_revision

    with open_database(settings_from(args), bounded=False) as engine:
        print(f"database at revision {current_revision(engine)} ({engine.url.render_as_string()})")
    return 0


def cmd_reembed(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not _check_model(settings):
        return 2
    from service.enrolment.reembed import reembed
    from service.faces.engine import FaceEngine
    from service.storage.database import make_session_factory
    from service.storage.setup import open_storage, prepare_private_files, require_keys

    prepare_private_files(settings)  # before the engine opens the SQLite file (see open_storage)
    with open_database(settings) as engine:
        keyring, store = open_storage(settings, engine)  # no new key while sealed rows exist
        require_keys(keyring, settings, engine)
        face_engine = FaceEngine(
            settings.model_dir, tf_threads=settings.tf_threads, runtime=settings.runtime_config()
        )
        report = reembed(
            make_session_factory(engine),
            store,
            face_engine,
            force=args.all,
            batch_size=args.batch_size,
            max_pixels=settings.max_pixels,
        )
    print(f"re-embedded {report.updated} image(s) with model {face_engine.version}")
    if report.unreadable:
        print(
            f"  queued because their stored embedding could not be read: image ids {report.unreadable}"
        )
    for image_id, reason in report.failed:
        print(f"  image {image_id}: {reason} (kept its old embedding; not used by verify)", file=sys.stderr)
    if report.embeddings_only:
        print(
            f"{len(report.embeddings_only)} image(s) were enrolled in embeddings-only mode "
            f"(FACEVERIFY_STORE_PHOTOS=false): no photo was kept, so they CANNOT be re-embedded. "
            f"Their users must re-enrol (POST /enroll) to verify with model {face_engine.version}; "
            f"image ids: {report.embeddings_only}",
            file=sys.stderr,
        )
    return 1 if report.failed or report.embeddings_only else 0
