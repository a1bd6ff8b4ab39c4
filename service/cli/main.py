"""The `faceverify` command line: one entry point, subcommands registered by the modules that own them.

The service's own command groups are imported here; other packages (training, the webcam client)
plug their groups in through the `faceverify.commands` entry-point group declared in pyproject.toml,
so the service never imports them. Heavy imports (TensorFlow, uvicorn) happen inside the command
functions, so `faceverify --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from service.cli import security, serve, storage

ENTRY_POINT_GROUP = "faceverify.commands"
Register = Callable[[argparse._SubParsersAction], None]


def command_groups() -> list[Register]:
    """The service's own groups first, then every installed plug-in group (by entry-point name)."""
    plugins = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    return [serve.register, security.register, storage.register, *(ep.load() for ep in plugins)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceverify",
        description="Face verification: serve the API, train and evaluate models, run the webcam client.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in command_groups():
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
