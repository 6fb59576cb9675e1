"""``lineage-audit serve``: run the gRPC server from a TOML config, env and flags.

Precedence, highest first: flags, environment (``LINEAGE_AUDIT_HOST``, ``LINEAGE_AUDIT_PORT``,
``LINEAGE_AUDIT_HTTP_PORT``), the TOML file, defaults. The config file layout (see
:class:`.config.ServerConfig`; every key is optional except the asset tables)::

    [server]
    host = "127.0.0.1"        # listen address
    port = 50051              # 0: any free port
    http_port = 9471          # /metrics, /healthz, /readyz; -1: off; 0: any free port
    max_message_bytes = 67108864
    max_rows = 65536          # rows per request; more is RESOURCE_EXHAUSTED
    workers = 4               # engine threads
    batching = true           # coalesce concurrent calls of one asset into one kernel call
    max_batch_rows = 8192     # rows per coalesced call
    max_batch_wait_ms = 2.0   # how long the first call waits for company
    max_queue_rows = 65536    # rows waiting per asset; beyond: RESOURCE_EXHAUSTED
    grace_seconds = 5.0       # in-flight calls get this long on SIGTERM/SIGINT
    series_dir = "series"     # per-window Parquet series + row journal; restarts resume from them
    actor = "lineage-audit-server"

    [ledger]                  # the audit ledger (alerts, baseline switches, server runs)
    db = "ledger.db"
    keys = "keys"
    signer = "process"        # a worker process holds the keys and signs; or "inline"

    [incidents]               # optional, needs [ledger]: Tier 5 queue (docs/tier5.md)
    db = "incidents.db"       # incident store (SQLite)
    policy = "policy.toml"    # incident policy: triggers, roles, halt hook per asset class

    [tls]                     # optional: TLS; with client_ca, mTLS (client certs required)
    cert = "server.pem"
    key = "server.key"
    client_ca = "clients-ca.pem"

    [auth]                    # optional: see lineage_audit.server.auth
    required = true
    tokens = "tokens.toml"    # static bearer tokens (sha256 digests)
    jwks = "jwks.json"        # JWT bearer tokens, checked against this local JWKS

    [assets.news-articles]    # one table per asset class
    baseline = "baselines/news"   # baseline artifact dir (relative: to the config file)
    candidates = ["baselines/news-2026q4"]  # loaded too; ActivateBaseline switches to one
    window = 256              # count-window size (default: the baseline's first size)
    backend = "auto"          # numpy | torch | keops | cupy | auto

Once listening it prints ``serving on HOST:PORT`` (the bound port, also for port 0) and, with
the HTTP side on, ``http on http://HOST:PORT``, then ``ready``, to stdout.
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

ENV = {
    "host": "LINEAGE_AUDIT_HOST",
    "port": "LINEAGE_AUDIT_PORT",
    "http_port": "LINEAGE_AUDIT_HTTP_PORT",
}


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
    parser.add_argument(
        "--http-port", type=int, help=f"HTTP side port, -1 = off (env {ENV['http_port']})"
    )
    parser.add_argument("--ledger", type=Path, help="ledger database (overrides [ledger] db)")
    parser.add_argument("--keys", type=Path, help="key directory of --ledger")
    parser.set_defaults(func=_serve)


def _settings(args: argparse.Namespace) -> ServerConfig:
    config = ServerConfig.from_toml(args.config)
    changes: dict[str, object] = {}
    for key, var in ENV.items():
        if os.environ.get(var):
            changes[key] = os.environ[var]
    for key in ("port", "http_port"):
        if key in changes:
            try:
                changes[key] = int(str(changes[key]))
            except ValueError:
                raise ConfigError(ENV[key], "expected an integer", changes[key]) from None
    for key in ENV:
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if not config.assets and config.lineage_db is None:
        raise ConfigError(
            "assets", f"{args.config}: no [assets.<class>] or [lineage] table; nothing to serve"
        )
    if (args.ledger is None) != (args.keys is None):
        raise ConfigError("--ledger/--keys", "give both or neither")
    if args.ledger is not None:
        changes.update(ledger_db=args.ledger, ledger_keys=args.keys)
    return dataclasses.replace(config, **changes)


def _serve(args: argparse.Namespace) -> int:
    config = _settings(args)
    ledger = None
    if config.ledger_db is not None:
        ledger = Ledger.open(config.ledger_db, config.ledger_keys, signer=config.ledger_signer)
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

    def ready(running) -> None:
        print(f"serving on {config.host}:{running.port}", flush=True)
        if running.http_port is not None:
            host = config.http_host or config.host
            scheme = "https" if config.tls is not None else "http"
            print(f"http on {scheme}://{host}:{running.http_port}", flush=True)
        print("ready", flush=True)

    try:
        await serve(config, ledger=ledger, ready=ready)
    except asyncio.CancelledError:
        print("stopped", file=sys.stderr, flush=True)
