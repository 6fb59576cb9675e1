"""Tier 5 inside the server: the ``[incidents]`` table becomes an incident manager on the
server's ledger, the halt hook, the gRPC service, the HTTP routes, and Tier 3 alerts that
open incidents per the policy.

Alerts to incidents (:class:`AlertIncidents`): the monitor calls listeners inside the
alert's write-ahead action, in an engine thread, before the window reaches the Parquet
series. So the listener only queues the trigger (:class:`~..incidents.AlertTriggers`) and
asks the event loop to queue a ``call`` job on the asset class's batcher: the batcher runs
it in the engine pool *after* the batch that raised the alert (one consumer per asset), so
the alert's outcome and the batch's windows are recorded when the evidence is read, and
scoring of other asset classes never waits for it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..incidents import (
    AlertTriggers,
    Evidence,
    HaltHook,
    IncidentError,
    IncidentManager,
    IncidentStore,
    Trigger,
    divergence_evidence,
    lineage_evidence,
    load_policy,
    threshold_history,
    triggers_from_lineage,
)
from ..incidents.http_api import incident_routes
from .batching import AssetBatcher, Job
from .config import ConfigError, ServerConfig
from .errors import RequestError
from .incidents_rpc import IncidentHub, IncidentServicer

__all__ = ["AlertIncidents", "IncidentSide", "start_incidents"]


class AlertIncidents:
    """Monitor listener: Tier 3 alerts of the policy's asset classes open (or join) incidents."""

    def __init__(self, manager: IncidentManager, gather, batchers: Mapping[str, AssetBatcher],
                 loop: asyncio.AbstractEventLoop, *, actor: str) -> None:  # fmt: skip
        self.manager = manager
        self.gather = gather  # asset class -> (Evidence, extra triggers)
        self.batchers = batchers
        self.loop = loop
        self.actor = actor
        self._pending = {name: AlertTriggers() for name in manager.policy.assets}
        self._tasks: set[asyncio.Task] = set()

    def listener(self, event: Any) -> None:
        """Engine thread, inside the alert's action: queue, and schedule the opening."""
        asset = event.transition.asset
        if asset in self._pending and asset in self.batchers:
            self._pending[asset](event)
            self.loop.call_soon_threadsafe(self._schedule, asset)

    def _schedule(self, asset: str) -> None:
        task = self.loop.create_task(self._after_batch(asset))
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    async def _after_batch(self, asset: str) -> None:
        try:
            try:
                await self.batchers[asset].submit(Job("call", call=lambda: self.open(asset)))
            except RequestError:  # batcher closing (alerts of the final flush): open anyway
                await self.loop.run_in_executor(self.batchers[asset].executor, self.open, asset)
        except Exception as exc:  # the alert stands on the ledger; say why no incident came
            print(f"warning: incident for asset class {asset!r} not opened: {exc}",
                  file=sys.stderr)  # fmt: skip

    def open(self, asset: str):
        """Engine thread: the queued triggers of ``asset`` (if a previous call has not taken
        them) with fresh evidence, to the manager; the policy decides."""
        triggers = self._pending[asset].take()
        if not triggers:
            return None
        evidence, extra = self.gather(asset)
        return self.manager.consider([*triggers, *extra], evidence, actor=self.actor)


def gather_evidence(manager: IncidentManager, config: ServerConfig, lineage: Any):
    """What the server holds about an asset class: threshold history (ledger), the window
    series (Parquet) and, if the policy names its lineage node, its Tier 2 subgraph."""

    def gather(asset: str) -> tuple[Evidence, list[Trigger]]:
        thresholds = threshold_history(manager.ledger, asset)
        divergence = sub = None
        if config.series_dir is not None:
            divergence = _or_warn(lambda: divergence_evidence(config.series_dir, asset,
                                                              thresholds=thresholds))  # fmt: skip
        node = manager.policy.asset(asset).lineage_node
        if node is not None and lineage is not None:
            with lineage._lock:  # the service's graph lock: ingest extends it meanwhile
                sub = _or_warn(lambda: lineage_evidence(lineage.graph, lineage.store, node))
        extra = triggers_from_lineage(sub, asset) if sub is not None else []
        evidence = Evidence(asset, lineage=sub, divergence=divergence, thresholds=thresholds)
        return evidence, extra

    return gather


def _or_warn(read):
    # Opening the incident matters more than one missing evidence section; say which.
    try:
        return read()
    except IncidentError as exc:
        print(f"warning: incident evidence: {exc}", file=sys.stderr)
        return None


@dataclass
class IncidentSide:
    manager: IncidentManager
    hook: HaltHook
    hub: IncidentHub
    alerts: AlertIncidents
    servicer: IncidentServicer
    routes: list = field(default_factory=list)

    def close(self) -> None:
        """Close the store (the server stops the hub's streams earlier, with the alerts')."""
        self.manager.store.close()


def start_incidents(config: ServerConfig, monitor, batchers, executor, lineage,
                    auth) -> IncidentSide:  # fmt: skip
    """Build the ``[incidents]`` side (call on the server's event loop)."""
    if monitor.ledger is None:
        raise ConfigError("incidents", "needs a [ledger]: every incident change is recorded")
    loop = asyncio.get_running_loop()
    policy = load_policy(config.incidents_policy)
    manager = IncidentManager(monitor.ledger, IncidentStore(config.incidents_db), policy)
    hook = HaltHook(manager)
    hub = IncidentHub()
    hub.bind(loop)
    manager.listeners.append(hub.listener)
    alerts = AlertIncidents(manager, gather_evidence(manager, config, lineage), batchers, loop,
                            actor=config.actor)  # fmt: skip
    monitor.listeners.append(alerts.listener)
    servicer = IncidentServicer(manager, hook, hub, auth, executor)
    routes = incident_routes(manager, hook, auth, executor=executor)
    return IncidentSide(manager, hook, hub, alerts, servicer, routes)
