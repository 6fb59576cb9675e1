"""A Python client of the lineage-audit gRPC server (``lineage-audit serve``).

    from lineage_audit.client import Client

    with Client("127.0.0.1:50051", token="...") as client:
        result = client.score("news-articles", embeddings)      # one-off window
        for reply in client.stream("news-articles", batches):   # the asset's window stream
            for window in reply.windows:
                print(window.window, window.z, window.level)

Embeddings go on the wire as packed little-endian float32 (``common.proto``); results come
back as :class:`lineage_audit.divergence.series.WindowResult`, the engine's own type. Errors
are ``grpc.RpcError`` with the server's status code and a message naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._generated.lineage_audit.v1 import (
    alerts_pb2,
    alerts_pb2_grpc,
    baselines_pb2,
    baselines_pb2_grpc,
    common_pb2,
    incidents_pb2,
    incidents_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
)
from .divergence.series import WindowResult

__all__ = ["Client", "StreamReply", "encode_embeddings", "window_from_proto"]

_LEVEL_NAMES = {
    common_pb2.LEVEL_OK: "ok",
    common_pb2.LEVEL_WATCH: "watch",
    common_pb2.LEVEL_HALT: "halt",
    common_pb2.LEVEL_UNSPECIFIED: "unspecified",
}
LEVELS = {name: value for value, name in _LEVEL_NAMES.items()}


def encode_embeddings(
    rows: Any,
    *,
    encoder_id: str | None = None,
    item_ids: Sequence[str] | None = None,
    times_ns: Sequence[int] | np.ndarray | None = None,
) -> common_pb2.Embeddings:
    """A (rows, dimension) array as the wire message (packed little-endian float32)."""
    array = np.ascontiguousarray(rows, dtype="<f4")
    if array.ndim != 2:
        raise ValueError(f"embeddings: expected a 2-D array (rows, dimension), got {array.shape}")
    message = common_pb2.Embeddings(data=array.tobytes(), shape=list(array.shape))
    if encoder_id:
        message.encoder_id = encoder_id
    if item_ids is not None:
        message.item_ids.extend(item_ids)
    if times_ns is not None:
        message.event_times_ns.extend(int(t) for t in times_ns)
    return message


def window_from_proto(message: common_pb2.WindowResult) -> WindowResult:
    def optional(name: str) -> int | None:
        return getattr(message, name) if message.HasField(name) else None

    return WindowResult(
        asset=message.asset, window=message.window, status=message.status, rows=message.rows,
        scored_rows=message.scored_rows, start_row=message.start_row, end_row=message.end_row,
        start_time_ns=optional("start_time_ns"), end_time_ns=optional("end_time_ns"),
        mmd2=message.mmd2, effect=message.effect, p=message.p, z=message.z,
        lambda_hat=message.lambda_hat, lambda_se=message.lambda_se,
        mean_similarity=message.mean_similarity, z_similarity=message.z_similarity,
        level=_LEVEL_NAMES[message.level], bandwidth_id=message.bandwidth_id,
        baseline_version=message.baseline_version, backend=message.backend,
    )  # fmt: skip


@dataclass(frozen=True)
class StreamReply:
    """One StreamScore response: the windows the batch completed, rows still pending, and
    whether the asset class's signal may be relied on (None without an incident policy)."""

    windows: list[WindowResult]
    pending_rows: int
    request_id: str
    reliance: dict[str, Any] | None = None


def _reliance(reply: Any) -> dict[str, Any] | None:
    """``{state, signal, halt_ledger_seq, incident_id}`` of a scoring reply, if it has one."""
    if not reply.HasField("reliance"):
        return None
    names = ("state", "signal", "halt_ledger_seq", "incident_id")
    return {name: getattr(reply.reliance, name) for name in names}


class AlertWatch:
    """An open WatchAlerts stream; iterate for alerts, :meth:`cancel` to end it.

    Construction returns once the server confirmed the subscription, so every alert recorded
    after that reaches this watch."""

    def __init__(self, call) -> None:
        self._call = call
        call.initial_metadata()  # blocks until the server has subscribed us

    def __iter__(self) -> Iterator[alerts_pb2.Alert]:
        return iter(self._call)

    def __next__(self) -> alerts_pb2.Alert:
        return next(self._call)

    def cancel(self) -> None:
        self._call.cancel()


class Client:
    """Synchronous client; thread-safe (one channel, shared by the stubs)."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if ca is not None or cert is not None:
            from .server.auth import channel_credentials

            creds = channel_credentials(ca=_path(ca), cert=_path(cert), key=_path(key))
            self.channel = grpc.secure_channel(address, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.timeout = timeout
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.scoring = scoring_pb2_grpc.ScoringServiceStub(self.channel)
        self.baselines_stub = baselines_pb2_grpc.BaselineServiceStub(self.channel)
        self.alerts = alerts_pb2_grpc.AlertServiceStub(self.channel)
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    # --- scoring ----------------------------------------------------------------------------

    def score(
        self, asset: str, rows: Any, *, encoder_id: str | None = None, request_id: str = ""
    ) -> WindowResult:
        """Score one batch as a one-off window (no stream state, no alerts)."""
        request = scoring_pb2.ScoreRequest(
            asset_class=asset,
            embeddings=encode_embeddings(rows, encoder_id=encoder_id),
            request_id=request_id,
        )
        reply = self.scoring.Score(request, timeout=self.timeout, metadata=self.metadata)
        return window_from_proto(reply.result)

    def stream(
        self,
        asset: str,
        batches: Iterable[Any],
        *,
        encoder_id: str | None = None,
        times_ns: Iterable[Sequence[int] | None] | None = None,
    ) -> Iterator[StreamReply]:
        """Append batches to the asset's window stream; one reply per batch, in order."""
        time_iter = iter(times_ns) if times_ns is not None else None

        def requests():
            for i, rows in enumerate(batches):
                times = next(time_iter) if time_iter is not None else None
                yield scoring_pb2.ScoreRequest(
                    asset_class=asset,
                    embeddings=encode_embeddings(rows, encoder_id=encoder_id, times_ns=times),
                    request_id=str(i),
                )

        for reply in self.scoring.StreamScore(requests(), metadata=self.metadata):
            yield StreamReply(
                [window_from_proto(w) for w in reply.windows], reply.pending_rows,
                reply.request_id, _reliance(reply),
            )  # fmt: skip

    # --- alerts and baselines ---------------------------------------------------------------

    def watch_alerts(self, assets: Sequence[str] = (), min_level: str | None = None) -> AlertWatch:
        request = alerts_pb2.WatchAlertsRequest(
            asset_classes=list(assets),
            min_level=LEVELS[min_level] if min_level else common_pb2.LEVEL_UNSPECIFIED,
        )
        return AlertWatch(self.alerts.WatchAlerts(request, metadata=self.metadata))

    def list_baselines(self, asset: str = "") -> list[baselines_pb2.Baseline]:
        reply = self.baselines_stub.ListBaselines(
            baselines_pb2.ListBaselinesRequest(asset_class=asset),
            timeout=self.timeout, metadata=self.metadata,
        )  # fmt: skip
        return list(reply.baselines)

    def activate_baseline(
        self, asset: str, version: str, reason: str = ""
    ) -> baselines_pb2.ActivateBaselineResponse:
        request = baselines_pb2.ActivateBaselineRequest(
            asset_class=asset, version=version, reason=reason
        )
        return self.baselines_stub.ActivateBaseline(
            request, timeout=self.timeout, metadata=self.metadata
        )

    # --- ledger -----------------------------------------------------------------------------

    def checkpoint(self, *, create: bool = False) -> ledger_pb2.Checkpoint:
        return self.ledger.GetCheckpoint(
            ledger_pb2.GetCheckpointRequest(create=create),
            timeout=self.timeout, metadata=self.metadata,
        )  # fmt: skip

    def inclusion_proof(self, seq: int, tree_size: int = 0) -> ledger_pb2.InclusionProof:
        return self.ledger.GetInclusionProof(
            ledger_pb2.GetInclusionProofRequest(seq=seq, tree_size=tree_size),
            timeout=self.timeout, metadata=self.metadata,
        )  # fmt: skip

    def consistency_proof(self, old_size: int, new_size: int = 0) -> ledger_pb2.ConsistencyProof:
        return self.ledger.GetConsistencyProof(
            ledger_pb2.GetConsistencyProofRequest(old_size=old_size, new_size=new_size),
            timeout=self.timeout, metadata=self.metadata,
        )  # fmt: skip

    def entries(self, start: int = 0, end: int = 0) -> Iterator[ledger_pb2.Entry]:
        return iter(self.ledger.GetEntries(
            ledger_pb2.GetEntriesRequest(start=start, end=end), metadata=self.metadata
        ))  # fmt: skip

    def evidence_bundle(self, seqs: Iterable[int], since: int = 0) -> bytes:
        reply = self.ledger.GetEvidenceBundle(
            ledger_pb2.GetEvidenceBundleRequest(seqs=list(seqs), since=since),
            timeout=self.timeout, metadata=self.metadata,
        )  # fmt: skip
        return reply.json

    # --- incidents (Tier 5) -----------------------------------------------------------------

    def _incidents(self) -> incidents_pb2_grpc.IncidentServiceStub:
        return incidents_pb2_grpc.IncidentServiceStub(self.channel)

    def _call(self, method: str, request: Any) -> Any:
        stub = self._incidents()
        return getattr(stub, method)(request, timeout=self.timeout, metadata=self.metadata)

    def list_incidents(self, state: str = "", asset_class: str = "") -> list[Any]:
        """Incident summaries (``incidents_pb2.Incident``), oldest first."""
        request = incidents_pb2.ListIncidentsRequest(state=state, asset_class=asset_class)
        return list(self._call("ListIncidents", request).incidents)

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        """The whole incident as JSON (evidence, confidence steps, history, halts)."""
        reply = self._call("GetIncident", incidents_pb2.GetIncidentRequest(id=incident_id))
        return json.loads(reply.json)

    def acknowledge_incident(self, incident_id: str, note: str = "") -> Any:
        request = incidents_pb2.TransitionRequest(id=incident_id, note=note)
        return self._call("Acknowledge", request)

    def resolve_incident(self, incident_id: str, note: str = "") -> Any:
        return self._call("Resolve", incidents_pb2.TransitionRequest(id=incident_id, note=note))

    def fire_halt(self, asset_class: str, reason: str, incident_id: str = "") -> Any:
        """Suspend reliance on the asset class's signal (``incidents_pb2.HaltReply``)."""
        request = incidents_pb2.FireHaltRequest(asset_class=asset_class, reason=reason,
                                                incident_id=incident_id)  # fmt: skip
        return self._call("FireHalt", request)

    def lift_halt(self, asset_class: str, reason: str, incident_id: str = "") -> Any:
        """Rely on the asset class's signal again (``incidents_pb2.HaltReply``)."""
        request = incidents_pb2.LiftHaltRequest(asset_class=asset_class, reason=reason,
                                                incident_id=incident_id)  # fmt: skip
        return self._call("LiftHalt", request)

    def watch_incidents(self, asset_classes: Sequence[str] = ()) -> AlertWatch:
        """An open WatchIncidents stream of ``incidents_pb2.IncidentEvent`` (returned once
        the server has subscribed it)."""
        request = incidents_pb2.WatchIncidentsRequest(asset_classes=list(asset_classes))
        return AlertWatch(self._incidents().WatchIncidents(request, metadata=self.metadata))

    def submit_attribution(self, asset_class: str, job_dir: str | Path) -> Any:
        """Upload a finished attribution job (its summary.json and results.parquet) as Tier 4
        evidence of ``asset_class`` (``incidents_pb2.SubmitAttributionReply``)."""
        folder = Path(job_dir)
        request = incidents_pb2.SubmitAttributionRequest(
            asset_class=asset_class,
            summary_json=(folder / "summary.json").read_bytes(),
            results_parquet=(folder / "results.parquet").read_bytes(),
        )
        return self._call("SubmitAttribution", request)

    def submit_ratings(self, ratings: Iterable[Any]) -> Any:
        """Tier 1 ratings (``SourceRating`` objects or their JSON) for every later evidence
        gather (``incidents_pb2.SubmitRatingsReply``)."""
        items = [r.to_json() if hasattr(r, "to_json") else r for r in ratings]
        request = incidents_pb2.SubmitRatingsRequest(
            ratings=[json.dumps(item).encode() for item in items]
        )
        return self._call("SubmitRatings", request)

    def incident_artifact(self, incident_id: str) -> dict[str, Any]:
        """Build (the server signs a checkpoint) and return the incident's audit artifact."""
        reply = self._call("BuildArtifact", incidents_pb2.BuildArtifactRequest(id=incident_id))
        return json.loads(reply.json)

    def score_with_reliance(
        self, asset: str, rows: Any, *, encoder_id: str | None = None
    ) -> tuple[WindowResult, dict[str, Any] | None]:
        """:meth:`score`, plus whether the asset class's signal may be relied on
        (``{state, signal, halt_ledger_seq, incident_id}``; None without a policy)."""
        request = scoring_pb2.ScoreRequest(
            asset_class=asset, embeddings=encode_embeddings(rows, encoder_id=encoder_id)
        )
        reply = self.scoring.Score(request, timeout=self.timeout, metadata=self.metadata)
        return window_from_proto(reply.result), _reliance(reply)

    # --- lifecycle --------------------------------------------------------------------------

    def health(self, service: str = "") -> str:
        reply = self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the channel connects (raises ``grpc.FutureTimeoutError``)."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
