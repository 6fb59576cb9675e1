"""``lineage-audit serve``: run the gRPC server from a TOML config, env and flags.

Precedence, highest first: flags, environment (``LINEAGE_AUDIT_HOST``, ``LINEAGE_AUDIT_PORT``),
the TOML file, defaults. The config file layout (see :class:`.config.ServerConfig`)::

    [server]
    host = "127.0.0.1"        # listen address
    port = 50051              # 0: any free port
    max_message_bytes = 67108864
    max_rows = 65536          # rows per request; more is RESOURCE_EXHAUSTED
    workers = 4               # engine threads
    grace_seconds = 5.0       # in-flight calls get this long on SIGTERM/SIGINT
    actor = "lineage-audit-server"

    [assets.news-articles]    # one table per asset class
    baseline = "baselines/news"   # baseline artifact dir (relative: to the config file)
    window = 256              # count-window size (default: the baseline's first size)
    backend = "auto"          # numpy | torch | keops | cupy | auto

Once listening it prints ``serving on HOST:PORT`` (the bound port, also for port 0) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from pathlib import Path

from ..ledger import Ledger
from .app import serve
from .config import ConfigError, ServerConfig

__all__ = ["register"]

ENV = {"host": "LINEAGE_AUDIT_HOST", "port": "LINEAGE_AUDIT_PORT"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the gRPC server (scoring, health, reflection)",
        description="Serve lineage_audit.v1 over gRPC for the asset classes of a TOML config. "
        "Stops gracefully on SIGTERM or SIGINT.",
    )
    parser.add_argument("--config", type=Path, required=True, help="server TOML file")
    parser.add_argument("--host", help=f"listen address (env {ENV['host']})")
    parser.add_argument("--port", type=int, help=f"listen port, 0 = any (env {ENV['port']})")
    parser.add_argument("--ledger", type=Path, help="ledger database for alert records")
    parser.add_argument("--keys", type=Path, help="key directory of --ledger")
    parser.set_defaults(func=_serve)


def _settings(args: argparse.Namespace) -> ServerConfig:
    config = ServerConfig.from_toml(args.config)
    changes: dict[str, object] = {}
    for key, var in ENV.items():
        if os.environ.get(var):
            changes[key] = os.environ[var]
    if "port" in changes:
        try:
            changes["port"] = int(str(changes["port"]))
        except ValueError:
            raise ConfigError(ENV["port"], "expected an integer", changes["port"]) from None
    for key in ENV:
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if not config.assets:
        raise ConfigError("assets", f"{args.config}: no [assets.<class>] table; nothing to serve")
    return dataclasses.replace(config, **changes)


def _serve(args: argparse.Namespace) -> int:
    config = _settings(args)
    if (args.ledger is None) != (args.keys is None):
        raise ConfigError("--ledger/--keys", "give both or neither")
    ledger = Ledger.open(args.ledger, args.keys) if args.ledger is not None else None
    try:
        asyncio.run(_main(config, ledger))
    finally:
        if ledger is not None:
            ledger.close()
    return 0


async def _main(config: ServerConfig, ledger: Ledger | None) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)

    def ready(port: int) -> None:
        print(f"serving on {config.host}:{port}", flush=True)

    try:
        await serve(config, ledger=ledger, ready=ready)
    except asyncio.CancelledError:
        print("stopped", file=sys.stderr, flush=True)
