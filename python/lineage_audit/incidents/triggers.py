"""What can open an incident, and whether the policy says it does.

Triggers come from Tier 3 alert transitions (:func:`trigger_from_alert`, usable as a
:class:`~lineage_audit.divergence.monitor.Monitor` listener through :class:`AlertTriggers`),
Tier 2 findings in the asset's lineage subgraph (:func:`triggers_from_lineage`) and Tier 4
batch results (:func:`trigger_from_attribution`). :func:`fires` applies the asset class's
:class:`~.policy.TriggerPolicy`; nothing opens an incident unless the policy says so.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .policy import AssetPolicy

__all__ = [
    "KINDS",
    "AlertTriggers",
    "Trigger",
    "fires",
    "trigger_from_alert",
    "trigger_from_attribution",
    "triggers_from_lineage",
]

KINDS = ("tier3.halt", "tier3.watch", "tier2.re-entry", "tier2.convergence",
         "tier4.discoveries")  # fmt: skip


@dataclass(frozen=True)
class Trigger:
    """One reason to open an incident; ``ledger_seq`` is the record that reported it."""

    tier: int
    kind: str
    asset_class: str
    detail: dict[str, Any] = field(default_factory=dict)
    ledger_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"tier": self.tier, "kind": self.kind, "asset_class": self.asset_class,
                "detail": self.detail, "ledger_seq": self.ledger_seq}  # fmt: skip

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Trigger:
        return cls(obj["tier"], obj["kind"], obj["asset_class"], dict(obj.get("detail", {})),
                   obj.get("ledger_seq"))  # fmt: skip


def trigger_from_alert(event: Any) -> Trigger | None:
    """A Tier 3 :class:`AlertEvent` into watch or halt as a trigger (None for other moves)."""
    t = event.transition
    level = t.after.value
    if level not in ("watch", "halt"):
        return None
    detail = {"from": t.before.value, "to": level, "window": t.window, "reason": t.reason,
              "baseline_version": event.baseline_version}  # fmt: skip
    if isinstance(t.z, float) and t.z == t.z and abs(t.z) != float("inf"):
        detail["z"] = t.z
    return Trigger(3, f"tier3.{level}", t.asset, detail, event.ledger_seq)


def triggers_from_lineage(lineage: Mapping[str, Any], asset_class: str) -> list[Trigger]:
    """A trigger per Tier 2 finding in an asset's lineage evidence (see ``evidence``)."""
    out = []
    for finding in lineage.get("findings", []):
        kind = "tier2.re-entry" if finding["finding"] == "re-entry" else "tier2.convergence"
        out.append(Trigger(2, kind, asset_class, dict(finding)))
    return out


def trigger_from_attribution(batch: Mapping[str, Any], asset_class: str) -> Trigger:
    """A Tier 4 batch (attribution evidence of one job) as a trigger."""
    keys = ("job", "rows", "discoveries", "discovery_fraction", "min_q", "fdr_q")
    return Trigger(4, "tier4.discoveries", asset_class, {k: batch.get(k) for k in keys})


def fires(trigger: Trigger, policy: AssetPolicy) -> bool:
    """Whether ``policy`` lets ``trigger`` open (or join) an incident."""
    rules = policy.triggers
    if trigger.kind == "tier3.halt":
        return rules.tier3 in ("halt", "watch")
    if trigger.kind == "tier3.watch":
        return rules.tier3 == "watch"
    if trigger.kind == "tier2.re-entry":
        return rules.tier2_re_entry
    if trigger.kind == "tier2.convergence":
        k = rules.tier2_convergence_k
        return k >= 2 and len(trigger.detail.get("sources", ())) >= k
    if trigger.kind == "tier4.discoveries":
        x = rules.tier4_discovery_fraction
        return x is not None and trigger.detail.get("discovery_fraction", 0.0) >= x
    return False


class AlertTriggers:
    """A Monitor listener that keeps Tier 3 triggers for the incident manager.

    The monitor calls listeners inside the alert's write-ahead action (in a scoring
    thread); gathering evidence there would slow scoring and tie the alert's outcome to
    the incident's, so triggers are queued and :meth:`take` hands them over later.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Trigger] = []

    def __call__(self, event: Any) -> None:
        trigger = trigger_from_alert(event)
        if trigger is not None:
            with self._lock:
                self._pending.append(trigger)

    def take(self) -> list[Trigger]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken
