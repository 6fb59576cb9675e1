"""The server: loads baselines, wires the services, health, reflection and the HTTP side.

:func:`build_server` returns a started :class:`Running` server; :func:`serve` runs one until
cancelled (then stops gracefully); :class:`ServerThread` runs one on its own event loop in a
background thread (tests, notebooks, embedding in another program).

Lifetime on the ledger: a ``server.run`` write-ahead action whose intent is recorded before
the first call is served (address, assets, baselines, auth mode, where each stream resumed)
and whose outcome is recorded by a graceful stop (rows and windows served, rows of incomplete
windows dropped). An intent without an outcome is a server that died.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .._generated.lineage_audit.v1 import (
    alerts_pb2,
    alerts_pb2_grpc,
    baselines_pb2,
    baselines_pb2_grpc,
    incidents_pb2,
    incidents_pb2_grpc,
    lineage_pb2,
    lineage_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
)
from ..divergence.journal import JOURNAL_DIR, RowJournal
from ..divergence.monitor import Monitor, WindowPolicy
from ..divergence.series import SeriesWriter
from ..ledger import Ledger
from ..lineage.http_api import lineage_routes
from ..lineage.service import LineageService
from . import verify_page
from .alerts import AlertHub, AlertServicer
from .auth import Authenticator
from .baselines import BaselineRegistry, BaselineServicer, LoadedBaseline
from .batching import AssetBatcher, BatchSettings
from .config import ServerConfig
from .http import HttpSide
from .incident_side import IncidentSide, start_incidents
from .ledger_service import add_ledger_service
from .lineage_rpc import LineageServicer
from .metrics import ServerMetrics
from .resume import replay_journals, restore_baselines, resume_streams
from .scoring import ScoringServicer

__all__ = ["Running", "ServerThread", "build_monitor", "build_server", "serve"]


def _service(module: Any, name: str) -> str:
    return module.DESCRIPTOR.services_by_name[name].full_name


SCORING_SERVICE = _service(scoring_pb2, "ScoringService")
BASELINE_SERVICE = _service(baselines_pb2, "BaselineService")
ALERT_SERVICE = _service(alerts_pb2, "AlertService")
LINEAGE_SERVICE = _service(lineage_pb2, "LineageService")
INCIDENT_SERVICE = _service(incidents_pb2, "IncidentService")


def build_monitor(
    config: ServerConfig,
    ledger: Ledger | None = None,
    registry: BaselineRegistry | None = None,
    listeners=(),
) -> Monitor:
    """A monitor with every configured asset class and its baseline (loaded and verified)."""
    registry = registry or BaselineRegistry()
    series = journal = None
    if config.series_dir is not None:
        series = SeriesWriter(config.series_dir)
        journal = RowJournal(Path(config.series_dir) / JOURNAL_DIR)
    monitor = Monitor(ledger=ledger, actor=config.actor, series=series, listeners=listeners,
                      journal=journal)  # fmt: skip
    for name, asset in config.assets.items():
        baseline = registry.load(asset.baseline, name)
        for candidate in asset.candidates:
            registry.load(candidate, name)
        policy = WindowPolicy(asset.window or baseline.window_sizes[0])
        monitor.add_asset(name, baseline, policy, backend=asset.backend)
    return monitor


@dataclass
class Running:
    """A started server and everything it owns."""

    config: ServerConfig
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    executor: ThreadPoolExecutor
    monitor: Monitor
    batchers: dict[str, AssetBatcher]
    hub: AlertHub
    metrics: ServerMetrics
    http: HttpSide | None = None
    lineage: LineageService | None = None
    incidents: IncidentSide | None = None
    run_action: Any = None  # the ledger's server.run action, entered
    serving: list[bool] = field(default_factory=lambda: [True])

    @property
    def http_port(self) -> int | None:
        return None if self.http is None else self.http.port

    async def stop(self, grace: float | None) -> None:
        """Refuse new calls, finish queued work, flush time windows, record the stop."""
        self.serving[0] = False
        await self.health.enter_graceful_shutdown()  # health reports NOT_SERVING first
        stopping = asyncio.create_task(self.server.stop(grace))
        for batcher in self.batchers.values():
            await batcher.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._finish)
        if self.http is not None:  # in-flight HTTP calls (ingest) finish before their store closes
            await self.http.stop()
        if self.lineage is not None and self.lineage.queue is not None:
            await self.lineage.queue.close()  # the last ingests are stored...
        if self.incidents is not None:
            await self.incidents.settled()  # ...and checked (Tier 2) before the store closes
        if self.lineage is not None:
            await self.lineage.close()
        self.hub.close()  # alert streams end UNAVAILABLE once no more alerts can come
        if self.incidents is not None:
            self.incidents.hub.close()
        await stopping
        self.executor.shutdown(wait=True)
        if self.incidents is not None:
            self.incidents.close()  # after the engine threads: an opening may still be running

    def _finish(self) -> None:
        for name, asset in self.monitor.assets.items():
            if asset.policy.by_time:
                self.monitor.flush(name)
        if self.run_action is not None:
            # Rows of incomplete windows stay in the journal for the next start; without a
            # series directory there is no journal and they are dropped.
            pending = "journaled_rows" if self.monitor.journal is not None else "dropped_rows"
            self.run_action.result = {
                name: {"rows": a.rows_seen, "windows": a.windows, "level": a.alerts.level.value,
                       pending: a.pending_rows}
                for name, a in self.monitor.assets.items()
            }  # fmt: skip
            self.run_action.__exit__(None, None, None)
        if self.monitor.journal is not None:
            self.monitor.journal.close()


async def build_server(
    config: ServerConfig, *, monitor: Monitor | None = None, ledger: Ledger | None = None
) -> Running:
    """Create, bind and start the server (call inside the event loop that will run it)."""
    metrics = ServerMetrics()
    hub = AlertHub(metrics)
    hub.bind(asyncio.get_running_loop())
    registry = BaselineRegistry()
    if monitor is None:
        monitor = build_monitor(config, ledger, registry)
    else:
        for name, asset in monitor.assets.items():
            registry.by_version.setdefault(
                asset.baseline.version, LoadedBaseline(asset.baseline, None, name)
            )
    monitor.listeners.append(hub.listener)
    restored = restore_baselines(monitor, registry)
    for name, item in restored.items():
        if not item["restored"]:
            print(f"warning: asset {name!r}: baseline {item['version']} was active before the "
                  f"restart but is {item['why']}; using the config's", file=sys.stderr)  # fmt: skip
    resumed = resume_streams(monitor, config.series_dir)
    for name, item in replay_journals(monitor).items():
        resumed.setdefault(name, {}).update(journal=item)
    auth = Authenticator(config.auth, tls=config.tls)
    executor = ThreadPoolExecutor(config.workers, thread_name_prefix="lineage-audit-engine")
    settings = BatchSettings(
        config.batching, config.max_batch_rows, config.max_batch_wait_ms / 1000,
        config.max_queue_rows,
    )  # fmt: skip
    batchers = {
        name: AssetBatcher(name, monitor, executor, settings, metrics) for name in monitor.assets
    }
    server = _grpc_server(config)
    scoring = ScoringServicer(monitor, batchers, auth, metrics, max_rows=config.max_rows)
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(scoring, server)
    baselines_pb2_grpc.add_BaselineServiceServicer_to_server(
        BaselineServicer(registry, monitor, batchers, auth), server
    )
    alerts_pb2_grpc.add_AlertServiceServicer_to_server(
        AlertServicer(hub, set(monitor.assets), auth), server
    )
    services = [SCORING_SERVICE, BASELINE_SERVICE, ALERT_SERVICE]
    lineage = None
    if config.lineage_db is not None:
        lineage = LineageService.open(config.lineage_db, monitor.ledger, executor,
                                      actor=config.actor)  # fmt: skip
        lineage_pb2_grpc.add_LineageServiceServicer_to_server(
            LineageServicer(lineage, auth), server
        )
        services.append(LINEAGE_SERVICE)
    incidents = None
    if config.incidents_db is not None:
        incidents = start_incidents(config, monitor, batchers, executor, lineage, auth)
        scoring.reliance = incidents.reliance.of
        incidents_pb2_grpc.add_IncidentServiceServicer_to_server(incidents.servicer, server)
        services.append(INCIDENT_SERVICE)
    if monitor.ledger is not None:
        services.append(add_ledger_service(server, monitor.ledger, executor, auth=auth))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = _bind(server, config)
    run_action = _record_start(monitor, config, port, auth, resumed, restored)
    for batcher in batchers.values():
        batcher.start()
    if lineage is not None:
        lineage.start()
    await server.start()
    for name in (*services, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    running = Running(config, server, port, health_servicer, executor, monitor, batchers, hub,
                      metrics, lineage=lineage, incidents=incidents,
                      run_action=run_action)  # fmt: skip
    if config.http_port >= 0:
        running.http = HttpSide(metrics, lambda: "SERVING" if running.serving[0] else
                                "NOT_SERVING")  # fmt: skip
        running.http.add_routes(verify_page.routes(verify_page.DEFAULT_PAGE))  # /verify
        if lineage is not None:
            running.http.add_routes(lineage_routes(lineage, auth))
        if incidents is not None:
            running.http.add_routes(incidents.routes)
        tls = config.tls.ssl_context() if config.tls is not None else None
        await running.http.start(config.http_host or config.host, config.http_port, tls)
    if monitor.ledger is not None:
        metrics.ledger_size(monitor.ledger.size)
    return running


def _grpc_server(config: ServerConfig) -> grpc.aio.Server:
    limit = config.max_message_bytes
    return grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
    )


def _bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    address = f"{config.host}:{config.port}"
    if config.tls is not None:
        port = server.add_secure_port(address, config.tls.server_credentials())
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return port


def _record_start(monitor: Monitor, config: ServerConfig, port: int, auth, resumed,
                  restored) -> Any:  # fmt: skip
    """Enter the ``server.run`` action (its intent is durable before anything is served)."""
    if monitor.ledger is None:
        print("warning: no [ledger] configured: alerts are not recorded", file=sys.stderr)
        return None
    subject = [
        (f"baseline:{a.baseline.version}", a.baseline.manifest_sha256)
        for a in monitor.assets.values()
    ]
    action = monitor.ledger.action(
        "server.run", actor=config.actor, subject=subject,
        address=f"{config.host}:{port}", tls=config.tls is not None,
        mtls=config.tls is not None and config.tls.client_ca is not None,
        auth_required=bool(config.auth.required), batching=config.batching,
        assets={name: {"baseline": a.baseline.version, "window": a.policy.size}
                for name, a in monitor.assets.items()},
        resumed=resumed, restored_baselines=restored,
    )  # fmt: skip
    action.__enter__()
    return action


async def serve(config: ServerConfig, *, ledger: Ledger | None = None, ready=None) -> None:
    """Run until cancelled (e.g. SIGINT/SIGTERM), then stop gracefully."""
    running = await build_server(config, ledger=ledger)
    if ready is not None:
        ready(running)
    try:
        await running.server.wait_for_termination()
    finally:
        await running.stop(config.grace_seconds)


class ServerThread:
    """A server on its own event loop in a daemon thread.

    ``with ServerThread(config) as server: ...`` serves on ``server.address`` until the block
    ends.
    """

    def __init__(
        self, config: ServerConfig, *, monitor: Monitor | None = None, ledger: Ledger | None = None
    ) -> None:
        self.config = config
        self._monitor = monitor
        self._ledger = ledger
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.running: Running | None = None

    @property
    def port(self) -> int:
        assert self.running is not None, "server not started"
        return self.running.port

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    @property
    def running_loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (to run coroutines on it from other threads)."""
        return self._loop

    def start(self) -> ServerThread:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            build_server(self.config, monitor=self._monitor, ledger=self._ledger), self._loop
        )
        try:
            self.running = future.result(timeout=120)
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def stop(self, grace: float | None = None) -> None:
        if self.running is not None:
            asyncio.run_coroutine_threadsafe(
                self.running.stop(self.config.grace_seconds if grace is None else grace),
                self._loop,
            ).result(timeout=120)
            self.running = None
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
