"""Command-line options shared by the subcommands that take them (argparse types, the audit
ledger group, the default actor)."""

from __future__ import annotations

import argparse
import getpass

from .ledger.cli import DEFAULT_DB, DEFAULT_KEYS

__all__ = ["default_actor", "int_at_least", "ledger_options"]


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def default_actor() -> str:
    return f"cli:{getpass.getuser()}"


def ledger_options(parser: argparse.ArgumentParser) -> None:
    """``--db``, ``--keys`` and ``--actor`` of a command recorded in the audit ledger."""
    group = parser.add_argument_group("audit ledger")
    group.add_argument("--db", default=DEFAULT_DB, help="ledger database (default: %(default)s)")
    group.add_argument("--keys", default=DEFAULT_KEYS, help="key directory (default: %(default)s)")
    group.add_argument(
        "--actor", default=None, help="identity recorded with the action (default: cli:<user>)"
    )
