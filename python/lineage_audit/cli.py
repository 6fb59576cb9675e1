"""The ``lineage-audit`` command: one entry point, commands registered by sub-packages.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``; its handlers return
an exit code. Errors of the package (and I/O errors) become ``error: ...`` with exit 2, never
a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys
from collections.abc import Sequence

from . import __version__
from .errors import LineageAuditError

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES: tuple[str, ...] = (
    "lineage_audit.ledger.cli",
    "lineage_audit.divergence.cli",
    "lineage_audit.attribution.cli",
    "lineage_audit.provenance.cli",
    "lineage_audit.lineage.cli",
    "lineage_audit.incidents.cli",
    "lineage_audit.server.cli",
    "lineage_audit.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lineage-audit",
        description="Detect recursive contamination in production AI; keep and verify a "
        "tamper-evident audit ledger.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _is_rpc_error(exc: BaseException) -> bool:
    grpc = sys.modules.get("grpc")  # only a command that imported grpc can raise its errors
    return grpc is not None and isinstance(exc, grpc.RpcError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 verification failed, 2 error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args))
    except LineageAuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
    except sqlite3.Error as exc:
        print(f"error: database: {exc}", file=sys.stderr)
    except Exception as exc:  # a server's refusal (grpc.RpcError): its code and message
        if not _is_rpc_error(exc):
            raise
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
