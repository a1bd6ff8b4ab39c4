"""What every `faceverify` command group shares: the --data-dir / --database-url / --model-dir options,
settings built from them over the environment, and opening the database as the service does
(schema brought to head first)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from service.runtime.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

_OVERRIDABLE = ("data_dir", "database_url", "model_dir")


def add_storage_options(parser: argparse.ArgumentParser, model: bool = False) -> None:
    """--data-dir and --database-url (and --model-dir for commands that load the model)."""
    parser.add_argument(
        "--data-dir", type=Path, help="image store, key file, default SQLite (FACEVERIFY_DATA_DIR)"
    )
    parser.add_argument("--database-url", help="SQLAlchemy/PostgreSQL URL (FACEVERIFY_DATABASE_URL)")
    if model:
        parser.add_argument("--model-dir", type=Path, help="served model directory (FACEVERIFY_MODEL_DIR)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment settings, overridden by the options given on the command line."""
    settings = Settings()
    overrides = {n: getattr(args, n) for n in _OVERRIDABLE if getattr(args, n, None) is not None}
    return settings.model_copy(update=overrides) if overrides else settings


@contextmanager
def open_database(settings: Settings, bounded: bool = True) -> Iterator[Engine]:
    """The database engine with its schema at head (as the service migrates at start-up), disposed
    on exit. `bounded=False` drops the statement deadline (a long migration)."""
    from service.storage.database import create_db_engine, upgrade_to_head

    engine = create_db_engine(settings.sqlalchemy_url, settings, bounded=bounded)
    try:
        upgrade_to_head(engine)
        yield engine
    finally:
        engine.dispose()


def print_group_help(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make a command group without a subcommand print its help and exit 2."""

    def show_help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)
    return parser
