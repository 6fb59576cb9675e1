"""The server: loads baselines, registers the services, health and reflection; starts/stops.

:func:`build_server` returns a started-ready ``grpc.aio.Server`` plus the bound port;
:func:`serve` runs one until cancelled (graceful stop); :class:`ServerThread` runs one on its
own event loop in a background thread (tests, notebooks, embedding in another program).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .._generated.lineage_audit.v1 import scoring_pb2, scoring_pb2_grpc
from ..divergence.artifact import load_baseline
from ..divergence.monitor import Monitor, WindowPolicy
from ..ledger import Ledger
from .config import ServerConfig
from .scoring import ScoringServicer

__all__ = ["SERVICE_NAMES", "Running", "ServerThread", "build_monitor", "build_server", "serve"]

SCORING_SERVICE = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
SERVICE_NAMES = (SCORING_SERVICE,)


def build_monitor(config: ServerConfig, ledger: Ledger | None = None) -> Monitor:
    """A monitor with every configured asset class and its baseline (loaded and verified)."""
    monitor = Monitor(ledger=ledger, actor=config.actor)
    for name, asset in config.assets.items():
        baseline = load_baseline(asset.baseline)
        policy = WindowPolicy(asset.window or baseline.window_sizes[0])
        monitor.add_asset(name, baseline, policy, backend=asset.backend)
    return monitor


@dataclass
class Running:
    """A built server: the grpc.aio server, its bound port, the health servicer, the pool."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    executor: ThreadPoolExecutor

    async def stop(self, grace: float | None) -> None:
        await self.health.enter_graceful_shutdown()  # health reports NOT_SERVING first
        await self.server.stop(grace)
        self.executor.shutdown(wait=False, cancel_futures=True)


async def build_server(
    config: ServerConfig, *, monitor: Monitor | None = None, ledger: Ledger | None = None
) -> Running:
    """Create, bind and start the server (call inside the event loop that will run it)."""
    monitor = monitor or build_monitor(config, ledger)
    limit = config.max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
    )
    executor = ThreadPoolExecutor(config.workers, thread_name_prefix="lineage-audit-engine")
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(
        ScoringServicer(monitor, executor, max_rows=config.max_rows), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    if port == 0:
        raise OSError(f"could not bind {config.host}:{config.port}")
    await server.start()
    for name in (*SERVICE_NAMES, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Running(server, port, health_servicer, executor)


async def serve(config: ServerConfig, *, ledger: Ledger | None = None, ready=None) -> None:
    """Run until cancelled (e.g. SIGINT/SIGTERM), then stop gracefully."""
    running = await build_server(config, ledger=ledger)
    if ready is not None:
        ready(running.port)
    try:
        await running.server.wait_for_termination()
    finally:
        await running.stop(config.grace_seconds)


class ServerThread:
    """A server on its own event loop in a daemon thread.

    ``with ServerThread(config) as server: ...`` serves on ``server.address`` until the block
    ends.
    """

    def __init__(self, config: ServerConfig, *, monitor: Monitor | None = None) -> None:
        self.config = config
        self._monitor = monitor
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._running: Running | None = None

    @property
    def port(self) -> int:
        assert self._running is not None, "server not started"
        return self._running.port

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            build_server(self.config, monitor=self._monitor), self._loop
        )
        try:
            self._running = future.result(timeout=60)
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def stop(self, grace: float | None = None) -> None:
        if self._running is not None:
            asyncio.run_coroutine_threadsafe(
                self._running.stop(self.config.grace_seconds if grace is None else grace),
                self._loop,
            ).result(timeout=60)
            self._running = None
        self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
