"""Prometheus metrics of one server: RPCs, batching, queues, windows, alerts, the ledger.

Each :class:`ServerMetrics` owns its own ``CollectorRegistry`` (never the process-wide default),
so several servers in one process, or one test after another, never share or clash on series.
prometheus_client is thread-safe, so the engine's worker threads may call any method.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["ALERT_LEVELS", "BATCH_REQUEST_BUCKETS", "SECONDS_BUCKETS", "ServerMetrics"]

PREFIX = "lineage_audit_"

# 1 ms .. 10 s: a small unary call through to a large batch on a busy CPU.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
ALERT_LEVELS = {"ok": 0, "watch": 1, "halt": 2}  # the value of lineage_audit_alert_level


class ServerMetrics:
    """The server's metrics in a private registry; :meth:`render` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._rpc_total = self._counter(
            "rpc_total", "RPCs finished, by status code", "method", "code"
        )
        self._rpc_seconds = self._histogram(
            "rpc_seconds", "RPC latency in seconds", SECONDS_BUCKETS, "method"
        )
        self._rows_scored = self._counter("rows_scored_total", "Embedding rows scored", "asset")
        self._batch_requests = self._histogram(
            "batch_requests",
            "Requests coalesced into one kernel call",
            BATCH_REQUEST_BUCKETS,
            "asset",
        )
        self._batch_seconds = self._histogram(
            "batch_seconds", "Kernel time per batch in seconds", SECONDS_BUCKETS, "asset"
        )
        self._queue_requests = self._gauge(
            "queue_requests", "Requests waiting to be scored", "asset"
        )
        self._queue_rows = self._gauge("queue_rows", "Rows waiting to be scored", "asset")
        self._rejected = self._counter(
            "rejected_total", "Requests refused before scoring, by reason", "asset", "reason"
        )
        self._windows = self._counter("windows_total", "Windows scored, by level", "asset", "level")
        self._last_z = self._gauge("last_z", "z (sigmas) of the last scored window", "asset")
        self._alerts = self._counter(
            "alerts_total", "Alert transitions, by level", "asset", "level"
        )
        self._alert_level = self._gauge(
            "alert_level", "Current alert level: 0 ok, 1 watch, 2 halt", "asset"
        )
        self._ledger_entries = self._gauge("ledger_entries", "Entries in the audit ledger")
        self._subscribers = self._gauge("alert_subscribers", "Open alert streams")

    # --- construction: every metric is prefixed and registered here only ---------------------

    def _counter(self, name: str, doc: str, *labels: str) -> Counter:
        return Counter(PREFIX + name, doc, labels, registry=self.registry)

    def _gauge(self, name: str, doc: str, *labels: str) -> Gauge:
        return Gauge(PREFIX + name, doc, labels, registry=self.registry)

    def _histogram(self, name: str, doc: str, buckets, *labels: str) -> Histogram:
        return Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=self.registry)

    # --- recording ----------------------------------------------------------------------------

    def rpc_finished(self, method: str, code: str, seconds: float) -> None:
        self._rpc_total.labels(method, code).inc()
        self._rpc_seconds.labels(method).observe(seconds)

    def batch_scored(self, asset: str, requests: int, rows: int, seconds: float) -> None:
        self._rows_scored.labels(asset).inc(rows)
        self._batch_requests.labels(asset).observe(requests)
        self._batch_seconds.labels(asset).observe(seconds)

    def queue_depth(self, asset: str, requests: int, rows: int) -> None:
        self._queue_requests.labels(asset).set(requests)
        self._queue_rows.labels(asset).set(rows)

    def rejected(self, asset: str, reason: str) -> None:
        self._rejected.labels(asset, reason).inc()

    def window_scored(self, asset: str, level: str, z: float) -> None:
        self._windows.labels(asset, level).inc()
        self._last_z.labels(asset).set(z)

    def alert(self, asset: str, level: str) -> None:
        if level not in ALERT_LEVELS:
            raise ValueError(f"level: expected one of {sorted(ALERT_LEVELS)}, got {level!r}")
        self._alerts.labels(asset, level).inc()
        self._alert_level.labels(asset).set(ALERT_LEVELS[level])

    def ledger_size(self, size: int) -> None:
        self._ledger_entries.set(size)

    def alert_subscribers(self, n: int) -> None:
        self._subscribers.set(n)

    # --- exposition ---------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
