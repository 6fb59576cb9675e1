"""The incident manager: opens incidents under the policy, moves them through their states,
and tells listeners (the gRPC stream) — every change a write-ahead ledger action.

```python
manager = IncidentManager(ledger, IncidentStore("incidents.db"), load_policy("policy.toml"))
incident = manager.consider(triggers, evidence, actor="lineage-audit")  # None: policy says no
manager.acknowledge(incident.id, actor="token:mro", note="looking")
manager.resolve(incident.id, actor="token:mro", note="vendor feed replaced")
```

Ledger actions: ``incident.open`` (subject: the incident's digest and each evidence
section's digest; fields: triggers, confidence with its steps, policy), ``incident.update``
(new triggers joined an active incident; evidence and confidence re-gathered),
``incident.acknowledge`` and ``incident.resolve`` (``from``, ``to``, ``note``). An actor the
policy does not list for a change is refused inside the action, so the refusal is on the
ledger as a ``failed`` outcome (:class:`~.errors.NotAuthorised`); a change out of order is
refused before anything is written (:class:`~.errors.TransitionError`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..ledger import Ledger
from ..ledger.records import rfc3339_now
from .confidence import compute_confidence
from .errors import IncidentError, NotAuthorised
from .evidence import Evidence
from .incident import Incident, check_transition, new_incident_id
from .policy import Policy
from .store import IncidentStore
from .triggers import Trigger, fires

__all__ = ["ANONYMOUS", "IncidentEvent", "IncidentManager"]

ANONYMOUS = "anonymous"  # the ledger actor of a refused call that carried no identity


@dataclass(frozen=True)
class IncidentEvent:
    """What listeners are told, after the change's ledger outcome exists.

    ``kind``: ``opened``, ``updated``, ``acknowledged``, ``resolved``, ``halt.fired``,
    ``halt.lifted``. ``detail`` holds the halt's payload for halt events."""

    kind: str
    incident: dict[str, Any] | None
    actor: str
    ledger_seq: int
    detail: dict[str, Any] | None = None


Listener = Callable[[IncidentEvent], None]


class IncidentManager:
    def __init__(self, ledger: Ledger, store: IncidentStore, policy: Policy) -> None:
        self.ledger = ledger
        self.store = store
        self.policy = policy
        self.listeners: list[Listener] = []
        self._lock = threading.RLock()  # one change at a time: check, then record, then store

    # --- reads ----------------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident:
        return self.store.get(incident_id)

    def list(self, *, state: str | None = None, asset_class: str | None = None) -> list[Incident]:
        if state is not None and state not in ("open", "acknowledged", "resolved"):
            raise IncidentError("state", "expected open, acknowledged or resolved", state)
        if asset_class is not None:
            self.policy.asset(asset_class)
        return self.store.list(state=state, asset_class=asset_class)

    # --- opening ----------------------------------------------------------------------------

    def consider(self, triggers: Sequence[Trigger], evidence: Evidence, *,
                 actor: str) -> Incident | None:  # fmt: skip
        """Open an incident (or join the asset class's active one) for the ``triggers`` the
        policy lets fire; returns None, writing nothing, when none does."""
        asset = self.policy.asset(evidence.asset_class)
        for i, trigger in enumerate(triggers):
            if trigger.asset_class != evidence.asset_class:
                raise IncidentError(f"triggers[{i}].asset_class", "differs from the evidence's "
                                    f"{evidence.asset_class!r}", trigger.asset_class)  # fmt: skip
        firing = [t for t in triggers if fires(t, asset)]
        if not firing:
            return None
        with self._lock:
            active = self.store.active_for(asset.asset_class)
            if active is not None:
                return self._join(active, firing, evidence, actor)
            return self._open(firing, evidence, actor)

    def _open(self, triggers: list[Trigger], evidence: Evidence, actor: str) -> Incident:
        asset = self.policy.asset(evidence.asset_class)
        incident = Incident(
            id=new_incident_id(), asset_class=asset.asset_class, signal=asset.signal,
            state="open", opened_at=rfc3339_now(), opened_by=actor,
            policy={"name": self.policy.name, "version": self.policy.version,
                    "sha256": self.policy.sha256},
            triggers=triggers, evidence=evidence,
            confidence=compute_confidence(evidence.confidence_inputs()),
        )  # fmt: skip
        with self.ledger.action("incident.open", actor=actor, subject=self._subject(incident),
                                **self._fields(incident)) as act:  # fmt: skip
            incident.ledger_seqs += [act.intent.seq, *_trigger_seqs(triggers)]
            self.store.add(incident)
            act.result = {"incident_id": incident.id, "state": "open"}
        self._finish(incident, act, "opened", actor)
        return incident

    def _join(self, incident: Incident, triggers: list[Trigger], evidence: Evidence,
              actor: str) -> Incident:  # fmt: skip
        before = incident.state
        incident.triggers = [*incident.triggers, *triggers]
        incident.evidence = evidence
        incident.confidence = compute_confidence(evidence.confidence_inputs())
        with self.ledger.action("incident.update", actor=actor, subject=self._subject(incident),
                                **self._fields(incident)) as act:  # fmt: skip
            incident.ledger_seqs += [act.intent.seq, *_trigger_seqs(triggers)]
            self.store.replace(incident, expected_state=before)
            act.result = {"incident_id": incident.id, "triggers": len(incident.triggers)}
        self._finish(incident, act, "updated", actor)
        return incident

    @staticmethod
    def _subject(incident: Incident) -> list[tuple[str, str]]:
        subject = [(f"incident:{incident.id}", incident.digest())]
        subject += [(f"evidence:{name}", sha) for name, sha in incident.evidence.digests().items()]
        return subject

    @staticmethod
    def _fields(incident: Incident) -> dict[str, Any]:
        return {
            "incident_id": incident.id,
            "asset_class": incident.asset_class,
            "signal": incident.signal,
            "policy": incident.policy,
            "triggers": [t.to_json() for t in incident.triggers],
            "confidence": incident.confidence.to_json(),
        }

    # --- state changes ----------------------------------------------------------------------

    def acknowledge(self, incident_id: str, *, actor: str | None, note: str = "") -> Incident:
        return self._transition(incident_id, "acknowledged", actor, note)

    def resolve(self, incident_id: str, *, actor: str | None, note: str = "") -> Incident:
        return self._transition(incident_id, "resolved", actor, note)

    def _transition(self, incident_id: str, to: str, actor: str | None, note: str) -> Incident:
        if not isinstance(note, str):
            raise IncidentError("note", "expected a string", note)
        with self._lock:
            incident = self.store.get(incident_id)
            before = incident.state
            check_transition(incident.id, before, to)  # out of order: nothing written
            asset = self.policy.asset(incident.asset_class)
            allowed = asset.acknowledge if to == "acknowledged" else asset.resolve
            verb = "acknowledge" if to == "acknowledged" else "resolve"
            who = actor or ANONYMOUS
            fields = {"incident_id": incident.id, "from": before, "to": to, "note": note}
            with self.ledger.action(f"incident.{verb}", actor=who,
                                    subject=[(f"incident:{incident.id}", incident.digest())],
                                    **fields) as act:  # fmt: skip
                if actor is None or actor not in allowed:
                    raise NotAuthorised(
                        "actor", f"may not {verb} incidents of asset class "
                        f"{incident.asset_class!r} (policy roles.{verb}: {list(allowed)})", who,
                    )  # fmt: skip
                incident.state = to
                incident.history.append({"from": before, "to": to, "actor": who,
                                         "at": rfc3339_now(), "note": note,
                                         "intent_seq": act.intent.seq})  # fmt: skip
                incident.ledger_seqs.append(act.intent.seq)
                self.store.replace(incident, expected_state=before)
                act.result = {"incident_id": incident.id, "state": to}
            self._finish(incident, act, to, who)
        return incident

    # --- after the outcome --------------------------------------------------------------------

    def _finish(self, incident: Incident, act: Any, kind: str, actor: str) -> None:
        """Remember the outcome's seq (for the evidence bundle), then tell listeners."""
        if act.outcome is not None:
            incident.ledger_seqs.append(act.outcome.seq)
            if incident.history and incident.history[-1].get("intent_seq") == act.intent.seq:
                incident.history[-1]["outcome_seq"] = act.outcome.seq
            self.store.replace(incident, expected_state=incident.state)
        self.notify(IncidentEvent(kind, incident.summary(), actor, act.intent.seq))

    def notify(self, event: IncidentEvent) -> None:
        for listener in list(self.listeners):
            listener(event)


def _trigger_seqs(triggers: Sequence[Trigger]) -> list[int]:
    return [t.ledger_seq for t in triggers if t.ledger_seq is not None]
