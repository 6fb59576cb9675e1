"""An incident: its trigger(s), evidence, confidence, and states open → acknowledged → resolved.

The state machine is strict: each state has exactly one successor, so a change out of
order (acknowledging twice, resolving an open incident, anything after resolved) is a
:class:`~.errors.TransitionError` raised before anything is written.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .confidence import ConfidenceInputs, ConfidenceResult, compute_confidence
from .errors import TransitionError
from .evidence import Evidence, digest
from .triggers import Trigger

__all__ = ["NEXT_STATE", "STATES", "VERBS", "Incident", "check_transition", "new_incident_id"]

STATES = ("open", "acknowledged", "resolved")
NEXT_STATE = {"open": "acknowledged", "acknowledged": "resolved"}
VERBS = {"acknowledged": "acknowledge", "resolved": "resolve"}


def new_incident_id() -> str:
    """``INC-<UTC date>-<8 hex>``: sortable by day, unguessable enough to be unique."""
    return f"INC-{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(4)}"


def check_transition(incident_id: str, state: str, to: str) -> None:
    """Raise :class:`TransitionError` unless ``state -> to`` is the next step."""
    if NEXT_STATE.get(state) == to:
        return
    verb = VERBS.get(to, to)
    if state == "resolved":
        why = "it is already resolved (resolved is final)"
    elif state == to:
        why = f"it is already {state}"
    else:
        why = f"it is {state}; the next step is {VERBS[NEXT_STATE[state]]}"
    raise TransitionError("state", f"incident {incident_id}: cannot {verb}: {why}", state)


@dataclass
class Incident:
    id: str
    asset_class: str
    signal: str
    state: str
    opened_at: str
    opened_by: str
    policy: dict[str, Any]
    triggers: list[Trigger]
    evidence: Evidence
    confidence: ConfidenceResult
    history: list[dict[str, Any]] = field(default_factory=list)
    halts: list[dict[str, Any]] = field(default_factory=list)
    ledger_seqs: list[int] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    def core(self) -> dict[str, Any]:
        """What the opening ledger record commits to (digest in its subject)."""
        return {
            "id": self.id,
            "asset_class": self.asset_class,
            "signal": self.signal,
            "policy": self.policy,
            "triggers": [t.to_json() for t in self.triggers],
            "evidence": self.evidence.digests(),
            "confidence": self.confidence.to_json(),
        }

    def digest(self) -> str:
        return digest(self.core())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "asset_class": self.asset_class,
            "signal": self.signal,
            "state": self.state,
            "opened_at": self.opened_at,
            "opened_by": self.opened_by,
            "policy": self.policy,
            "triggers": [t.to_json() for t in self.triggers],
            "evidence": self.evidence.to_json(),
            "confidence": self.confidence.to_json(),
            "history": self.history,
            "halts": self.halts,
            "ledger_seqs": sorted(set(self.ledger_seqs)),
        }

    def summary(self) -> dict[str, Any]:
        """The queue's view: no evidence bodies."""
        last = self.history[-1] if self.history else {}
        return {
            "id": self.id,
            "asset_class": self.asset_class,
            "signal": self.signal,
            "state": self.state,
            "opened_at": self.opened_at,
            "updated_at": last.get("at", self.opened_at),
            "confidence": self.confidence.confidence,
            "band": self.confidence.band,
            "triggers": sorted({t.kind for t in self.triggers}),
            "halted": bool(self.halts)
            and self.halts[-1]["action"] == "halt.fire"
            and self.halts[-1].get("status") == "succeeded",
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Incident:
        conf = obj["confidence"]
        # recomputed from the recorded inputs: a stored result that differs is not trusted
        result = compute_confidence(ConfidenceInputs.from_json(conf["inputs"]))
        return cls(
            id=obj["id"], asset_class=obj["asset_class"], signal=obj["signal"],
            state=obj["state"], opened_at=obj["opened_at"], opened_by=obj["opened_by"],
            policy=dict(obj["policy"]), triggers=[Trigger.from_json(t) for t in obj["triggers"]],
            evidence=Evidence.from_json(obj["evidence"]), confidence=result,
            history=list(obj.get("history", [])), halts=list(obj.get("halts", [])),
            ledger_seqs=list(obj.get("ledger_seqs", [])),
        )  # fmt: skip
