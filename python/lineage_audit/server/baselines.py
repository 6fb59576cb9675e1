"""BaselineService: the baseline artifacts the server has loaded, and which one is active.

Fitting stays a batch job (``lineage-audit baseline fit``); the server loads each asset's
``baseline`` and its ``candidates`` at start (verified on load) and can switch between them.
A switch runs in the asset's batcher queue, so it falls between two scoring calls, and is a
write-ahead ledger action with the caller as actor (:meth:`Monitor.switch_baseline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from .._generated.lineage_audit.v1 import baselines_pb2, baselines_pb2_grpc
from ..divergence.artifact import load_baseline
from ..divergence.baseline import Baseline
from ..divergence.monitor import Monitor
from .auth import Authenticator
from .batching import AssetBatcher, Job
from .errors import RequestError, status_for

__all__ = ["BaselineRegistry", "BaselineServicer", "LoadedBaseline"]


@dataclass(frozen=True)
class LoadedBaseline:
    baseline: Baseline
    path: Path | None  # None: handed in already loaded (not from a file of the config)
    asset: str  # the asset class whose config named it


class BaselineRegistry:
    """Every loaded baseline by version (an artifact named twice is loaded once)."""

    def __init__(self) -> None:
        self.by_version: dict[str, LoadedBaseline] = {}

    def load(self, path: Path, asset: str) -> Baseline:
        for item in self.by_version.values():
            if item.path == path:
                return item.baseline
        baseline = load_baseline(path)
        self.by_version.setdefault(baseline.version, LoadedBaseline(baseline, path, asset))
        return baseline

    def get(self, version: str) -> LoadedBaseline:
        if not version:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "version: missing")
        if version not in self.by_version:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"version: no loaded baseline {version!r}; loaded: {sorted(self.by_version)}",
            )
        return self.by_version[version]


def baseline_to_proto(item: LoadedBaseline, monitor: Monitor) -> baselines_pb2.Baseline:
    b = item.baseline
    active = monitor.assets.get(item.asset)
    return baselines_pb2.Baseline(
        version=b.version,
        asset_class=item.asset,
        dimension=b.dimension,
        encoder_id=b.config.encoder_id or "",
        window_sizes=list(b.window_sizes),
        manifest_sha256=b.manifest_sha256 or "",
        bandwidth_id=b.bandwidth.id,
        active=active is not None and active.baseline.version == b.version,
    )


class BaselineServicer(baselines_pb2_grpc.BaselineServiceServicer):
    def __init__(
        self,
        registry: BaselineRegistry,
        monitor: Monitor,
        batchers: dict[str, AssetBatcher],
        auth: Authenticator,
    ) -> None:
        self.registry = registry
        self.monitor = monitor
        self.batchers = batchers
        self.auth = auth

    async def ListBaselines(self, request, context):
        try:
            self.auth.identify(context)
        except Exception as exc:
            await context.abort(*status_for(exc))
        items = [
            baseline_to_proto(item, self.monitor)
            for item in sorted(
                self.registry.by_version.values(), key=lambda i: (i.asset, str(i.path))
            )
            if not request.asset_class or item.asset == request.asset_class
        ]
        return baselines_pb2.ListBaselinesResponse(baselines=items)

    async def GetBaseline(self, request, context):
        try:
            self.auth.identify(context)
            return baseline_to_proto(self.registry.get(request.version), self.monitor)
        except Exception as exc:
            await context.abort(*status_for(exc))

    async def ActivateBaseline(self, request, context):
        try:
            actor = self.auth.identify(context) or self.monitor.actor
            item = self.registry.get(request.version)
            batcher = self._batcher(request.asset_class)
            if item.asset != request.asset_class:
                raise RequestError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"version: baseline {item.baseline.version} was loaded for asset class "
                    f"{item.asset!r}, not {request.asset_class!r}",
                )
            reason = request.reason or "activated over gRPC"

            def switch():
                return self.monitor.switch_baseline(
                    request.asset_class, item.baseline, actor=actor, reason=reason
                )

            _, seq = await batcher.submit(Job("call", call=switch))
            return baselines_pb2.ActivateBaselineResponse(
                baseline=baseline_to_proto(item, self.monitor), ledger_seq=seq or 0
            )
        except Exception as exc:
            await context.abort(*status_for(exc))

    def _batcher(self, asset: str) -> AssetBatcher:
        if not asset:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "asset_class: missing")
        if asset not in self.batchers:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"asset_class: {asset!r} not served; served: {sorted(self.batchers)}",
            )
        return self.batchers[asset]
