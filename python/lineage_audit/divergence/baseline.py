"""A fitted baseline: everything a window's score is judged against (DESIGN §5.2).

Reference X (unit rows), frozen bandwidth, the reference's own kernel term, per window size
the sorted null statistics (MMD² and mean similarity), the witness calibration when
model-generated examples were supplied, the alert rules and their measured ARL₀, the encoder
id and the data's provenance. Fitting lives in ``fit``; the on-disk format in ``artifact``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .calibration import NullDistribution
from .errors import BaselineError, EncoderMismatch, InputError
from .rules import ConsecutiveRule, HaltRule, WatchRule, halt_rule_from_json
from .statistics import Bandwidth, WitnessModel

__all__ = ["Baseline", "BaselineConfig"]

MIN_NULL_WINDOWS = 1000


@dataclass(frozen=True)
class BaselineConfig:
    """Parameters of a fit; every one is recorded in the artifact's manifest."""

    window_sizes: tuple[int, ...] = (256,)
    block_length: int | None = None  # default: window // 8 (8 blocks per null window)
    null_windows: int = 10_000
    calibration_fraction: float = 0.3
    bandwidth_sample: int = 2000
    xx_exact_max_rows: int = 32_768
    seed: int = 0
    encoder_id: str | None = None
    asset_class: str = "default"
    watch: WatchRule = field(default_factory=WatchRule)
    halt: HaltRule = field(default_factory=ConsecutiveRule)
    stride: int | None = None  # windows advance by this many rows; default: the window size
    arl_windows: int = 2000
    arl_stream_windows: int = 500
    target_holdout: float = 0.5

    def __post_init__(self) -> None:
        if not self.window_sizes or any(int(n) < 2 for n in self.window_sizes):
            raise InputError("window_sizes", "expected sizes >= 2", self.window_sizes)
        if self.null_windows < MIN_NULL_WINDOWS:
            raise InputError(
                "null_windows", f"expected at least {MIN_NULL_WINDOWS}", self.null_windows
            )
        if not 0.0 < self.calibration_fraction < 1.0:
            raise InputError(
                "calibration_fraction", "expected between 0 and 1", self.calibration_fraction
            )
        if not 0.0 < self.target_holdout < 1.0:
            raise InputError("target_holdout", "expected between 0 and 1", self.target_holdout)
        if self.stride is not None and self.stride < 1:
            raise InputError("stride", "expected >= 1", self.stride)

    def block_length_for(self, window: int) -> int:
        if self.block_length is not None:
            return min(self.block_length, window)
        return max(1, window // 8)

    def stride_for(self, window: int) -> int:
        return self.stride or window

    def to_json(self) -> dict[str, Any]:
        return {
            "window_sizes": list(self.window_sizes),
            "block_length": self.block_length,
            "null_windows": self.null_windows,
            "calibration_fraction": self.calibration_fraction,
            "bandwidth_sample": self.bandwidth_sample,
            "xx_exact_max_rows": self.xx_exact_max_rows,
            "seed": self.seed,
            "encoder_id": self.encoder_id,
            "asset_class": self.asset_class,
            "watch": self.watch.to_json(),
            "halt": self.halt.to_json(),
            "stride": self.stride,
            "arl_windows": self.arl_windows,
            "arl_stream_windows": self.arl_stream_windows,
            "target_holdout": self.target_holdout,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BaselineConfig:
        return cls(
            window_sizes=tuple(int(n) for n in obj["window_sizes"]),
            block_length=obj["block_length"],
            null_windows=int(obj["null_windows"]),
            calibration_fraction=float(obj["calibration_fraction"]),
            bandwidth_sample=int(obj["bandwidth_sample"]),
            xx_exact_max_rows=int(obj["xx_exact_max_rows"]),
            seed=int(obj["seed"]),
            encoder_id=obj["encoder_id"],
            asset_class=str(obj["asset_class"]),
            watch=WatchRule.from_json(obj["watch"]),
            halt=halt_rule_from_json(obj["halt"]),
            stride=obj["stride"],
            arl_windows=int(obj["arl_windows"]),
            arl_stream_windows=int(obj["arl_stream_windows"]),
            target_holdout=float(obj["target_holdout"]),
        )


@dataclass
class Baseline:
    """A fitted baseline in memory. ``version`` is content-derived (see ``artifact``)."""

    config: BaselineConfig
    dimension: int
    bandwidth: Bandwidth
    reference: np.ndarray
    xx: float
    xx_method: str
    nulls: dict[int, NullDistribution]
    similarity_nulls: dict[int, NullDistribution]
    witness: WitnessModel | None = None
    targets: np.ndarray | None = None
    arl0: dict[int, dict[str, Any]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    manifest_sha256: str = ""

    @property
    def encoder_id(self) -> str | None:
        return self.config.encoder_id

    @property
    def window_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.nulls))

    def null_for(self, window: int) -> NullDistribution:
        if window not in self.nulls:
            raise BaselineError(
                f"baseline {self.version or '(unsaved)'} has no null for windows of {window} "
                f"rows; it was calibrated for {list(self.window_sizes)}"
            )
        return self.nulls[window]

    def check_encoder(self, encoder_id: str | None, dimension: int) -> None:
        """Refuse embeddings from another encoder or of another dimension."""
        if dimension != self.dimension:
            raise EncoderMismatch(
                f"embeddings have dimension {dimension}, baseline {self.version} was fitted on "
                f"{self.dimension} (encoder {self.encoder_id or 'unnamed'})"
            )
        if encoder_id and self.encoder_id and encoder_id != self.encoder_id:
            raise EncoderMismatch(
                f"embeddings come from encoder {encoder_id!r}, baseline {self.version} was "
                f"fitted on {self.encoder_id!r}; fit a baseline for this encoder"
            )
