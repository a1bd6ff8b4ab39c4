"""`faceverify serve`, `faceverify db upgrade` and `faceverify reembed` (registered by service/cli.py).

Heavy imports (TensorFlow, uvicorn) happen inside the command functions so that `faceverify --help`
and the other subcommands stay fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.core.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    """Environment settings, overridden by the options given on the command line."""
    settings = Settings()
    overrides = {
        name: getattr(args, name)
        for name in ("data_dir", "database_url", "model_dir")
        if getattr(args, name, None) is not None
    }
    return settings.model_copy(update=overrides) if overrides else settings


def _add_common(parser: argparse.ArgumentParser, model: bool = True) -> None:
    parser.add_argument("--data-dir", type=Path, help="image store + default SQLite (FACEVERIFY_DATA_DIR)")
    parser.add_argument("--database-url", help="SQLAlchemy/PostgreSQL URL (FACEVERIFY_DATABASE_URL)")
    if model:
        parser.add_argument("--model-dir", type=Path, help="served model directory (FACEVERIFY_MODEL_DIR)")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    serve = subparsers.add_parser("serve", help="run the verification API (migrates the database first)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--log-level", default="info")
    _add_common(serve)
    serve.set_defaults(func=cmd_serve)

    db = subparsers.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    upgrade = db_sub.add_parser("upgrade", help="bring the schema to the newest migration (idempotent)")
    _add_common(upgrade, model=False)
    upgrade.set_defaults(func=cmd_db_upgrade)
    db.set_defaults(func=lambda _args: (db.print_help(), 2)[1])

    reembed = subparsers.add_parser(
        "reembed",
        help="recompute stored embeddings with the served model from the stored photos: after a model "
        "change, and for embeddings that cannot be read (tampered, copied from another row)",
    )
    _add_common(reembed)
    reembed.add_argument(
        "--all", action="store_true", help="also re-embed readable rows of the current version"
    )
    reembed.add_argument("--batch-size", type=int, default=32)
    reembed.set_defaults(func=cmd_reembed)


def _check_model(settings: Settings) -> bool:
    from service.engine import ModelNotFoundError, read_card

    try:
        read_card(settings.model_dir)
    except ModelNotFoundError as exc:
        print(f"faceverify: {exc}", file=sys.stderr)
        return False
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not _check_model(settings):
        return 2
    import os

    from service.logs import configure_logging
    from service.main import create_app
    from service.server import serve
    from service.storage_setup import PRIVATE_UMASK

    os.umask(PRIVATE_UMASK)  # photos, keys and the database are private to the service's user

    configure_logging(settings.log_format, args.log_level)
    # The app's lifespan migrates to head (serialised across replicas) before taking traffic.
    # service.server says why this is uvicorn with a guarded protocol, and which limits it sets.
    serve(create_app(settings), settings, args.host, args.port, args.log_level)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from service.core.db import create_db_engine, current_revision, upgrade_to_head

    settings = _settings(args)
    engine = create_db_engine(settings.sqlalchemy_url, settings, bounded=False)
    try:
        upgrade_to_head(engine)
        print(f"database at revision {current_revision(engine)} ({engine.url.render_as_string()})")
    finally:
        engine.dispose()
    return 0


def cmd_reembed(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not _check_model(settings):
        return 2
    from service.core.db import create_db_engine, make_session_factory, upgrade_to_head
    from service.engine import FaceEngine
    from service.reembed import reembed
    from service.storage_setup import open_storage

    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        upgrade_to_head(engine)
        _keyring, store = open_storage(settings)
        face_engine = FaceEngine(settings.model_dir, tf_threads=settings.tf_threads)
        report = reembed(
            make_session_factory(engine),
            store,
            face_engine,
            force=args.all,
            batch_size=args.batch_size,
            max_pixels=settings.max_pixels,
        )
    finally:
        engine.dispose()
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
