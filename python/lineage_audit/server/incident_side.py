"""Tier 5 inside the server: the ``[incidents]`` table becomes an incident manager on the
server's ledger, the halt hook, the gRPC service, the HTTP routes, and triggers of every tier
that open incidents per the policy.

- Tier 3 (:class:`AlertIncidents`): the monitor calls listeners inside the alert's write-ahead
  action, in an engine thread, before the window reaches the Parquet series. So the listener
  only queues the trigger (:class:`~..incidents.AlertTriggers`) and asks the event loop to
  queue a ``call`` job on the asset class's batcher: the batcher runs it in the engine pool
  *after* the batch that raised the alert (one consumer per asset), so the alert's outcome and
  the batch's windows are recorded when the evidence is read, and scoring of other asset
  classes never waits for it.
- Tier 2 (:class:`LineageIncidents`): after each ingest batch is stored, the asset classes
  whose policy names a ``lineage_node`` and a Tier 2 trigger have their subgraph's findings
  re-checked in a thread of its own (at most one check per class running and one pending);
  findings none of the class's incidents holds yet go to the manager.
- Tier 4 and Tier 1 (:class:`IncidentDesk`): finished attribution jobs and source ratings
  submitted over gRPC/HTTP are checked, recorded and kept next to the incident store
  (:class:`EvidenceKeeper`), so every later evidence gather includes them; a new job is a
  Tier 4 trigger.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import sys
import threading
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..incidents import (
    AlertTriggers,
    Evidence,
    HaltHook,
    Incident,
    IncidentError,
    IncidentManager,
    IncidentStore,
    NotAuthorised,
    Trigger,
    divergence_evidence,
    fires,
    load_policy,
    rating_evidence,
    threshold_history,
    trigger_from_attribution,
    triggers_from_lineage,
)
from ..incidents.artifact import ArtifactShelf
from ..incidents.evidence import (
    AttributionShelf,
    RatingShelf,
    attribution_upload,
    check_ratings,
    digest,
    lineage_findings,
    lineage_section,
    lineage_subgraph,
)
from ..incidents.http_api import incident_routes
from ..incidents.manager import ANONYMOUS
from .batching import AssetBatcher, Job
from .config import ConfigError, ServerConfig
from .errors import RequestError
from .incidents_rpc import IncidentHub, IncidentServicer

__all__ = [
    "AlertIncidents",
    "EvidenceKeeper",
    "IncidentDesk",
    "IncidentSide",
    "LineageIncidents",
    "RelianceView",
    "start_incidents",
]

DEFAULT_K = 3  # convergence size the lineage evidence reports when the policy sets none


def _warn(what: str, exc: Exception) -> None:
    print(f"warning: {what}: {exc}", file=sys.stderr)


def _or_warn(read):
    # Opening the incident matters more than one missing evidence section; say which.
    try:
        return read()
    except IncidentError as exc:
        _warn("incident evidence", exc)
        return None


# --- what the server holds about an asset class --------------------------------------------


class EvidenceKeeper:
    """Gathers an asset class's evidence from what the server holds: threshold history
    (ledger), window series (Parquet), the lineage subgraph of the policy's ``lineage_node``,
    and the submitted Tier 4 jobs and Tier 1 ratings kept next to the incident store
    (``attribution/<asset class>/<job>/`` and ``ratings.json``)."""

    def __init__(self, manager: IncidentManager, config: ServerConfig, lineage: Any) -> None:
        folder = Path(config.incidents_db).parent
        self.manager = manager
        self.config = config
        self.lineage = lineage
        self.jobs = AttributionShelf(folder / "attribution")
        self.ratings = RatingShelf(folder / "ratings.json")

    def k_for(self, asset: str) -> int:
        k = self.manager.policy.asset(asset).triggers.tier2_convergence_k
        return k if k >= 2 else DEFAULT_K

    def subgraph(self, asset: str):
        """``(subgraph, event digests)`` of the asset's lineage node, or None without one."""
        node = self.manager.policy.asset(asset).lineage_node
        if node is None or self.lineage is None:
            return None
        return lineage_subgraph(self.lineage.graph, self.lineage.store, node,
                                lock=self.lineage._lock)  # fmt: skip

    def gather(self, asset: str, subgraph=None) -> tuple[Evidence, list[Trigger]]:
        """The asset class's evidence and the Tier 2 triggers of its lineage findings
        (``subgraph``: one :meth:`subgraph` already read)."""
        held = rating_evidence(self.ratings.all())
        thresholds = threshold_history(self.manager.ledger, asset)
        lineage = self._lineage(asset, held, subgraph)
        ratings = _in_scope(held, lineage)
        evidence = Evidence(asset, lineage=lineage, divergence=self._divergence(asset, thresholds),
                            attribution=_or_warn(lambda: self.jobs.evidence(asset)) or [],
                            thresholds=thresholds, ratings=ratings)  # fmt: skip
        return evidence, triggers_from_lineage(lineage, asset) if lineage else []

    def _divergence(self, asset: str, thresholds) -> dict[str, Any] | None:
        if self.config.series_dir is None or asset not in self.config.assets:
            return None  # not scored here: no series to read
        try:
            return divergence_evidence(self.config.series_dir, asset, thresholds=thresholds)
        except IncidentError as exc:  # field "series": nothing scored yet (a Tier 2/4 opening)
            if exc.field != "series":
                _warn("incident evidence", exc)
            return None

    def _lineage(self, asset: str, ratings, subgraph) -> dict[str, Any] | None:
        node = self.manager.policy.asset(asset).lineage_node
        if node is None or self.lineage is None:
            return None
        sub, wanted = subgraph or _or_warn(lambda: self.subgraph(asset)) or (None, None)
        if sub is None:
            return None
        return lineage_section(node, sub, wanted, k=self.k_for(asset), ratings=ratings)


def _in_scope(ratings: list[dict[str, Any]], lineage: dict[str, Any] | None) -> list:
    """The ratings of sources in the asset's lineage subgraph (all of them when the asset has
    no lineage to scope by): a source that does not feed the asset says nothing about it."""
    if lineage is None:
        return ratings
    feeding = set(lineage["datasets"])
    return [r for r in ratings if r["source"] in feeding]


def _key(trigger: Trigger) -> str:
    """What makes a Tier 2 finding or a Tier 4 job the same one again."""
    if trigger.tier == 4:
        return f"{trigger.kind}:{trigger.detail.get('job')}"
    return f"{trigger.kind}:{digest(trigger.detail)}"


def held_triggers(manager: IncidentManager, asset: str, *, active_only: bool) -> set[str]:
    """Keys of the Tier 2 findings and Tier 4 jobs the asset class's incidents hold."""
    return {_key(t) for i in manager.store.list(asset_class=asset)
            if i.active or not active_only for t in i.triggers if t.tier in (2, 4)}  # fmt: skip


def unheld(triggers: Sequence[Trigger], held: Collection[str]) -> list[Trigger]:
    return [t for t in triggers if _key(t) not in held]


# --- Tier 3: alerts ----------------------------------------------------------------------


class AlertIncidents:
    """Monitor listener: Tier 3 alerts of the policy's asset classes open (or join) incidents."""

    def __init__(self, manager: IncidentManager, keeper: EvidenceKeeper,
                 batchers: Mapping[str, AssetBatcher], loop: asyncio.AbstractEventLoop, *,
                 actor: str) -> None:  # fmt: skip
        self.manager = manager
        self.keeper = keeper
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
            _warn(f"incident for asset class {asset!r} not opened", exc)

    def open(self, asset: str) -> Incident | None:
        """Engine thread: the queued triggers of ``asset`` (if a previous call has not taken
        them) with fresh evidence, to the manager; the policy decides. Lineage findings the
        active incident already holds are not added again."""
        triggers = self._pending[asset].take()
        if not triggers:
            return None
        evidence, extra = self.keeper.gather(asset)
        with self.manager._lock:
            extra = unheld(extra, held_triggers(self.manager, asset, active_only=True))
            return self.manager.consider([*triggers, *extra], evidence, actor=self.actor)


# --- Tier 2: lineage ingest ----------------------------------------------------------------


class LineageIncidents:
    """Tier 2 findings open (or join) incidents as lineage is ingested.

    :meth:`ingested` is the lineage ingestor's ``stored()`` hook. Each watched asset class
    (``lineage_node`` and a Tier 2 trigger in its policy) gets its subgraph re-checked in
    this watcher's own thread, coalesced: one check running per class and at most one
    pending, however many batches arrive. Only findings that none of the class's incidents
    (resolved ones included: the graph never forgets a path) holds reach the manager, so an
    ingest batch that finds nothing new writes nothing.
    """

    def __init__(self, manager: IncidentManager, keeper: EvidenceKeeper,
                 loop: asyncio.AbstractEventLoop, *, actor: str) -> None:  # fmt: skip
        self.manager = manager
        self.keeper = keeper
        self.loop = loop
        self.actor = actor
        self.assets = [a.asset_class for a in manager.policy.assets.values()
                       if a.lineage_node and (a.triggers.tier2_re_entry
                                              or a.triggers.tier2_convergence_k >= 2)]  # fmt: skip
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="lineage-audit-tier2")
        self._running: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()

    def ingested(self, events: Sequence[Any]) -> None:
        """Ingest thread, after the events are stored and in the graph: schedule checks."""
        if self.assets and events:
            self.loop.call_soon_threadsafe(self._request_all)

    def _request_all(self) -> None:
        for asset in self.assets:
            if asset in self._running:
                self._again.add(asset)
            else:
                self._running[asset] = self.loop.create_task(self._checks(asset))

    async def _checks(self, asset: str) -> None:
        try:
            while True:
                self._again.discard(asset)
                try:
                    await self.loop.run_in_executor(self.executor, self.check, asset)
                except Exception as exc:
                    _warn(f"Tier 2 check of asset class {asset!r}", exc)
                if asset not in self._again:
                    return
        finally:
            del self._running[asset]

    async def settled(self) -> None:
        """Return once no check is running or pending."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def check(self, asset: str) -> Incident | None:
        """The asset class's Tier 2 findings the policy lets fire and no incident holds yet,
        with fresh evidence, to the manager."""
        policy = self.manager.policy.asset(asset)
        try:
            subgraph = self.keeper.subgraph(asset)
        except IncidentError:  # its node is not in the graph (yet)
            return None
        found = lineage_findings(subgraph[0], self.keeper.k_for(asset))
        firing = [t for t in triggers_from_lineage({"findings": found}, asset) if fires(t, policy)]
        if not unheld(firing, held_triggers(self.manager, asset, active_only=False)):
            return None
        evidence, _ = self.keeper.gather(asset, subgraph)
        with self.manager._lock:  # held again: an alert's opening may have taken them
            new = unheld(firing, held_triggers(self.manager, asset, active_only=False))
            return self.manager.consider(new, evidence, actor=self.actor) if new else None

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def _after_ingest(lineage: Any, hook) -> None:
    """Call ``hook(events)`` after the lineage ingestor's own ``stored()`` (graph extended)."""
    ingestor = lineage.ingestor
    stored = ingestor.stored

    def both(events):
        stored(events)
        hook(events)

    ingestor.stored = both


# --- Tier 4 and Tier 1 submissions, artifacts --------------------------------------------


@dataclass(frozen=True)
class AttributionSubmitted:
    job: str
    stored: bool
    rows: int
    discoveries: int
    discovery_fraction: float
    intent_seq: int
    outcome_seq: int
    incident: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "stored": self.stored, "rows": self.rows,
                "discoveries": self.discoveries, "discovery_fraction": self.discovery_fraction,
                "intent_seq": self.intent_seq, "outcome_seq": self.outcome_seq,
                "incident": self.incident}  # fmt: skip


@dataclass(frozen=True)
class RatingsSubmitted:
    sources: list[str]
    held: int
    intent_seq: int
    outcome_seq: int

    def to_json(self) -> dict[str, Any]:
        return {"sources": self.sources, "held": self.held, "intent_seq": self.intent_seq,
                "outcome_seq": self.outcome_seq}  # fmt: skip


class IncidentDesk:
    """What callers hand the server beyond state changes: Tier 4 jobs and Tier 1 ratings
    (checked before anything is written, then one write-ahead action each, the caller
    authorised inside it so a refusal is recorded), and audit artifacts."""

    def __init__(self, manager: IncidentManager, keeper: EvidenceKeeper, *, actor: str) -> None:
        self.manager = manager
        self.keeper = keeper
        self.actor = actor
        self.artifacts = ArtifactShelf(Path(keeper.config.incidents_db).parent / "artifacts")

    def submit_attribution(self, asset_class: str, summary_json: bytes, results: bytes,
                           actor: str | None) -> AttributionSubmitted:  # fmt: skip
        policy = self.manager.policy.asset(asset_class)
        summary, job = attribution_upload(summary_json, results)
        self.keeper.jobs.folder(asset_class)  # a name unusable as a folder: refused now
        subject = [
            (f"attribution-results:{job}", summary["results_sha256"]),
            (f"attribution-summary:{job}", hashlib.sha256(summary_json).hexdigest()),
        ]
        with self.manager.ledger.action(
            "attribution.submit", actor=actor or ANONYMOUS, subject=subject,
            asset_class=asset_class, job=job, rows=summary["rows"],
            discoveries=summary["discoveries"], model_id=summary.get("model_id"),
        ) as act:  # fmt: skip
            _authorise(policy.submit, actor, f"submit attribution jobs of asset class "
                       f"{asset_class!r} (policy roles.submit: {list(policy.submit)})")  # fmt: skip
            stored = self.keeper.jobs.put(asset_class, job, summary_json, results)
            act.result = {"job": job, "stored": stored}
        incident = self._consider_job(asset_class, job, act.intent.seq)
        batch = next(b for b in self.keeper.jobs.evidence(asset_class) if b["job"] == job)
        return AttributionSubmitted(job, stored, batch["rows"], batch["discoveries"],
                                    batch["discovery_fraction"], act.intent.seq,
                                    act.outcome.seq,
                                    incident.summary() if incident else None)  # fmt: skip

    def _consider_job(self, asset: str, job: str, seq: int) -> Incident | None:
        """The job as a Tier 4 trigger, unless an incident of the class holds it already (a
        job submitted again; a resolved incident included)."""
        evidence, _ = self.keeper.gather(asset)
        batch = next(b for b in evidence.attribution if b["job"] == job)
        trigger = replace(trigger_from_attribution(batch, asset), ledger_seq=seq)
        with self.manager._lock:
            if not unheld([trigger], held_triggers(self.manager, asset, active_only=False)):
                return None
            return self.manager.consider([trigger], evidence, actor=self.actor)

    def submit_ratings(self, items: Sequence[Any], actor: str | None) -> RatingsSubmitted:
        ratings = check_ratings(items)
        sources = [r["source"] for r in ratings]
        with self.manager.ledger.action(
            "ratings.submit", actor=actor or ANONYMOUS,
            subject=[(f"rating:{r['source']}", digest(r)) for r in ratings],
            ratings={r["source"]: r["rating"] for r in ratings},
        ) as act:  # fmt: skip
            for asset in self.manager.policy.assets.values():
                _authorise(asset.submit, actor, f"submit ratings: they reach every asset "
                           f"class's evidence, and roles.submit of {asset.asset_class!r} is "
                           f"{list(asset.submit)}")  # fmt: skip
            held = self.keeper.ratings.put(ratings)
            act.result = {"stored": sources, "held": held}
        return RatingsSubmitted(sources, held, act.intent.seq, act.outcome.seq)

    def build_artifact(self, incident_id: str) -> dict[str, Any]:
        return self.artifacts.build(self.manager.get(incident_id), self.manager.ledger)

    def latest_artifact(self, incident_id: str) -> dict[str, Any]:
        return self.artifacts.latest(self.manager.get(incident_id))


def _authorise(allowed: Sequence[str], actor: str | None, what: str) -> None:
    if actor is None or actor not in allowed:
        raise NotAuthorised("actor", f"may not {what}", actor or ANONYMOUS)


# --- reliance, for the scoring replies --------------------------------------------------------


class RelianceView:
    """Whether each asset class's signal is relied on, for every scoring reply.

    Reads the incident store's ``suspensions`` table through a SQLite connection of its own
    (a reply never waits behind an incident write), and only when another connection has
    committed since the last read (``PRAGMA data_version``) — halts fired by the CLI on the
    same store included."""

    def __init__(self, path: Path, manager: IncidentManager) -> None:
        self.policy = manager.policy
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._version: int | None = None
        self._suspended: dict[str, tuple[int, str]] = {}

    def of(self, asset_class: str) -> dict[str, Any] | None:
        """``{state, signal, halt_ledger_seq, incident_id}``; None if the policy has no such
        asset class."""
        asset = self.policy.assets.get(asset_class)
        if asset is None:
            return None
        halt = self._current().get(asset.signal)
        if halt is None:
            return {"state": "relied-on", "signal": asset.signal}
        return {"state": "suspended", "signal": asset.signal, "halt_ledger_seq": halt[0],
                "incident_id": halt[1]}  # fmt: skip

    def _current(self) -> dict[str, tuple[int, str]]:
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                rows = self._db.execute("SELECT signal, ledger_seq, incident_id FROM suspensions")
                self._suspended = {s: (seq, incident or "") for s, seq, incident in rows}
                self._version = version
            return self._suspended

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --- the side as a whole ---------------------------------------------------------------------


@dataclass
class IncidentSide:
    manager: IncidentManager
    hook: HaltHook
    hub: IncidentHub
    keeper: EvidenceKeeper
    alerts: AlertIncidents
    lineage: LineageIncidents
    desk: IncidentDesk
    reliance: RelianceView
    servicer: IncidentServicer
    routes: list = field(default_factory=list)

    async def settled(self) -> None:
        """Wait for the Tier 2 checks in flight (after ingest has stopped)."""
        await self.lineage.settled()

    def close(self) -> None:
        """Close the store (the server stops the hub's streams earlier, with the alerts')."""
        self.lineage.close()
        self.reliance.close()
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
    keeper = EvidenceKeeper(manager, config, lineage)
    alerts = AlertIncidents(manager, keeper, batchers, loop, actor=config.actor)
    monitor.listeners.append(alerts.listener)
    watcher = LineageIncidents(manager, keeper, loop, actor=config.actor)
    if lineage is not None:
        _after_ingest(lineage, watcher.ingested)
    desk = IncidentDesk(manager, keeper, actor=config.actor)
    servicer = IncidentServicer(manager, hook, hub, auth, executor, desk=desk)
    routes = incident_routes(manager, hook, auth, executor=executor, desk=desk)
    reliance = RelianceView(config.incidents_db, manager)
    return IncidentSide(manager, hook, hub, keeper, alerts, watcher, desk, reliance, servicer,
                        routes)  # fmt: skip
