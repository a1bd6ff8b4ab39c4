"""The `faceverify` command line: one entry point, subcommands registered by the modules that own them.

Modules are imported lazily per subcommand group so that `faceverify serve --help` does not pay for
importing the training stack, and so that each package owns its own options.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module exposes `register(subparsers)`; it adds its subcommands, each with `func=callable(args) -> int`.
_COMMAND_MODULES: tuple[str, ...] = (
    "service.commands",
    "service.security.cli",
    "service.storage_commands",
    "training.cli",
    "clients.webcam",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceverify",
        description="Face verification: serve the API, train and evaluate models, run the webcam client.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
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
