"""Alert rules (DESIGN §5.3): watch, and halt by N consecutive, K-of-L or CUSUM; ARL₀.

Rules are small state machines fed one window's ``z`` at a time. Alert *levels* per asset are
``ok < watch < halt``; a halt latches until someone resets it (a halted signal must not
silently resume), watch follows the latest window.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from statistics import NormalDist
from typing import Any

from .errors import InputError

__all__ = [
    "AlertState",
    "ArlEstimate",
    "ConsecutiveRule",
    "CusumRule",
    "HaltRule",
    "KOfLRule",
    "Level",
    "Transition",
    "WatchRule",
    "halt_rule_from_json",
    "parse_halt_rule",
]


class Level(StrEnum):
    OK = "ok"
    WATCH = "watch"
    HALT = "halt"


@dataclass(frozen=True)
class WatchRule:
    """Watch when ``z >= z_threshold`` and the effect size is at least ``min_effect``."""

    z_threshold: float = 2.0
    min_effect: float = 0.0

    def fires(self, z: float, effect: float) -> bool:
        return z >= self.z_threshold and effect >= self.min_effect

    def to_json(self) -> dict[str, Any]:
        return {"z": self.z_threshold, "min_effect": self.min_effect}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> WatchRule:
        return cls(float(obj["z"]), float(obj["min_effect"]))


class HaltRule(ABC):
    """A halt rule's parameters and its running state."""

    kind: str

    @abstractmethod
    def update(self, z: float) -> bool:
        """Feed one window's z; True when the rule calls for a halt now."""

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def to_json(self) -> dict[str, Any]: ...

    @abstractmethod
    def fresh(self) -> HaltRule:
        """A copy with the same parameters and empty state."""

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.to_json().items() if k != "kind")
        return f"{self.kind}({params})"


@dataclass
class ConsecutiveRule(HaltRule):
    """Halt when ``z >= z_threshold`` in ``n`` consecutive windows (the default rule)."""

    n: int = 3
    z_threshold: float = 3.0
    _run: int = field(default=0, repr=False)
    kind = "consecutive"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise InputError("halt.n", "expected >= 1", self.n)

    def update(self, z: float) -> bool:
        self._run = self._run + 1 if z >= self.z_threshold else 0
        return self._run >= self.n

    def reset(self) -> None:
        self._run = 0

    def fresh(self) -> ConsecutiveRule:
        return ConsecutiveRule(self.n, self.z_threshold)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "z": self.z_threshold}

    def iid_arl0(self) -> float:
        """ARL₀ if window z's were independent N(0,1): ``(1-q^n) / ((1-q) q^n)``."""
        q = 1.0 - NormalDist().cdf(self.z_threshold)
        return (1.0 - q**self.n) / ((1.0 - q) * q**self.n)


@dataclass
class KOfLRule(HaltRule):
    """Halt when at least ``k`` of the last ``l`` windows have ``z >= z_threshold``."""

    k: int = 3
    l: int = 5  # noqa: E741 - the rule's conventional name
    z_threshold: float = 3.0
    _recent: deque[bool] = field(default_factory=deque, repr=False)
    kind = "k-of-l"

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.l:
            raise InputError("halt.k", f"expected 1 <= k <= l = {self.l}", self.k)
        self._recent = deque(maxlen=self.l)

    def update(self, z: float) -> bool:
        self._recent.append(z >= self.z_threshold)
        return sum(self._recent) >= self.k

    def reset(self) -> None:
        self._recent.clear()

    def fresh(self) -> KOfLRule:
        return KOfLRule(self.k, self.l, self.z_threshold)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "k": self.k, "l": self.l, "z": self.z_threshold}


@dataclass
class CusumRule(HaltRule):
    """One-sided CUSUM on z: ``S = max(0, S + z - k)``; halt when ``S >= h``."""

    k: float = 0.5
    h: float = 5.0
    _sum: float = field(default=0.0, repr=False)
    kind = "cusum"

    def __post_init__(self) -> None:
        if not self.h > 0:
            raise InputError("halt.h", "expected > 0", self.h)

    def update(self, z: float) -> bool:
        step = self._sum + z - self.k
        self._sum = step if step > 0 else 0.0  # z = -inf resets, as it should
        return self._sum >= self.h

    def reset(self) -> None:
        self._sum = 0.0

    def fresh(self) -> CusumRule:
        return CusumRule(self.k, self.h)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "k": self.k, "h": self.h}


def halt_rule_from_json(obj: dict[str, Any]) -> HaltRule:
    kind = obj.get("kind")
    if kind == "consecutive":
        return ConsecutiveRule(int(obj["n"]), float(obj["z"]))
    if kind == "k-of-l":
        return KOfLRule(int(obj["k"]), int(obj["l"]), float(obj["z"]))
    if kind == "cusum":
        return CusumRule(float(obj["k"]), float(obj["h"]))
    raise InputError("halt.kind", "expected consecutive, k-of-l or cusum", kind)


def parse_halt_rule(text: str) -> HaltRule:
    """CLI form: ``consecutive:N``, ``k-of-l:K/L`` or ``cusum:K/H``."""
    kind, _, params = text.partition(":")
    try:
        if kind == "consecutive":
            return ConsecutiveRule(int(params or 3))
        if kind == "k-of-l":
            k, l = (int(v) for v in params.split("/"))  # noqa: E741
            return KOfLRule(k, l)
        if kind == "cusum":
            k_ref, h = (float(v) for v in params.split("/"))
            return CusumRule(k_ref, h)
    except ValueError:
        pass
    raise InputError(
        "halt rule", "expected consecutive:N, k-of-l:K/L or cusum:K/H (e.g. cusum:0.5/5)", text
    )


@dataclass(frozen=True)
class Transition:
    """A change of an asset's alert level, caused by one window (or a reset)."""

    asset: str
    before: Level
    after: Level
    window: int
    z: float
    reason: str


class AlertState:
    """An asset's current level, driven by the watch rule and its halt rule."""

    def __init__(self, asset: str, watch: WatchRule, halt: HaltRule) -> None:
        self.asset = asset
        self.watch = watch
        self.halt = halt.fresh()
        self.level = Level.OK

    def step(self, window: int, z: float, effect: float) -> Transition | None:
        halting = self.halt.update(z)
        if self.level is Level.HALT:
            return None  # latched until reset
        if halting:
            after, reason = Level.HALT, f"halt rule {self.halt.describe()} met"
        elif self.watch.fires(z, effect):
            after = Level.WATCH
            reason = (
                f"z {z:.2f} >= {self.watch.z_threshold} and effect {effect:.4g} >= "
                f"{self.watch.min_effect}"
            )
        else:
            after, reason = Level.OK, "below the watch threshold"
        return self._move(after, window, z, reason)

    def reset(self, window: int, reason: str) -> Transition | None:
        self.halt.reset()
        return self._move(Level.OK, window, math.nan, reason)

    def _move(self, after: Level, window: int, z: float, reason: str) -> Transition | None:
        if after is self.level:
            return None
        transition = Transition(self.asset, self.level, after, window, z, reason)
        self.level = after
        return transition


@dataclass(frozen=True)
class ArlEstimate:
    """False-halt run length of a rule measured on null streams."""

    rule: dict[str, Any]
    streams: int
    windows: int
    halts: int
    run_lengths: tuple[int, ...]

    @property
    def estimate(self) -> float:
        """Windows per false halt (``inf`` when none was seen: see ``lower_95``)."""
        return self.windows / self.halts if self.halts else math.inf

    @property
    def lower_95(self) -> float:
        """One-sided 95% lower bound on ARL₀ (Poisson bound on the halt count)."""
        return self.windows / _poisson_upper_95(self.halts)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "streams": self.streams,
            "windows": self.windows,
            "false_halts": self.halts,
            "arl0_estimate": None if math.isinf(self.estimate) else self.estimate,
            "arl0_lower_95": self.lower_95,
        }


def _poisson_upper_95(count: int) -> float:
    """Upper 95% bound on a Poisson mean after ``count`` events (chi² / 2)."""
    if count == 0:
        return -math.log(0.05)
    dof = 2 * count + 2  # Wilson-Hilferty approximation of the chi-square quantile
    z = NormalDist().inv_cdf(0.95)
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3 / 2


def measure_arl0(rule: HaltRule, streams: Iterable[Iterable[float]]) -> ArlEstimate:
    """Run a fresh copy of ``rule`` along each null stream of z until it halts or ends."""
    windows = halts = count = 0
    lengths: list[int] = []
    for stream in streams:
        count += 1
        state = rule.fresh()
        seen = 0
        for z in stream:
            seen += 1
            if state.update(z):
                halts += 1
                lengths.append(seen)
                break
        windows += seen
    return ArlEstimate(rule.to_json(), count, windows, halts, tuple(lengths))
