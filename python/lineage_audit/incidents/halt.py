"""The halt hook: suspend reliance on one signal, tell the deployer's systems, record it all.

Per asset class the policy says whether the hook is enabled and which actors may fire it.
:meth:`HaltHook.fire` is one write-ahead ledger action ``halt.fire``:

1. intent (actor = the caller's authenticated identity, or ``anonymous``);
2. authorisation — hook enabled for the asset class and the actor listed; otherwise
   :class:`~.errors.HaltRefused` is raised inside the action, so the refusal is recorded as
   the action's ``failed`` outcome and nothing else happens;
3. the asset class's signal is marked suspended (only that one: other signals, other asset
   classes and the scoring itself are untouched);
4. a DSSE envelope (payload type :data:`HALT_PAYLOAD_TYPE`, signed with the ledger's record
   keys, ECDSA P-256 and ML-DSA-65) is POSTed to the policy's webhook with a timeout — without
   holding the manager's lock, so incident changes go on while a slow receiver answers;
5. outcome: the suspension and the webhook's delivery (status or error) — a delivery that
   fails does not undo the suspension (halting is the safe side), it is recorded;
6. listeners (the gRPC ``WatchIncidents`` stream) get a ``halt.fired`` event.

A receiver checks what it got with :func:`verify_halt_envelope` (or any DSSE verifier with
the ledger's public record keys; both signatures must verify). :meth:`HaltHook.lift` is the
reverse, ``halt.lift``, with the same authorisation and a webhook of its own; lifting a signal
that is not suspended is a :class:`~.errors.TransitionError` and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..ledger import _vcore
from ..ledger.keys import PublicKeys, load_public_keys
from ..ledger.records import (
    Envelope,
    canonical_json,
    rfc3339_now,
    sign_envelope,
    sign_envelope_with,
)
from .errors import HaltRefused, IncidentError, TransitionError
from .manager import ANONYMOUS, IncidentEvent, IncidentManager

__all__ = ["HALT_FORMAT", "HALT_PAYLOAD_TYPE", "HaltHook", "HaltResult", "verify_halt_envelope"]

HALT_PAYLOAD_TYPE = "application/vnd.lineage-audit.halt+json"
HALT_FORMAT = "lineage-audit/halt/v1"
MAX_ERROR = 300


@dataclass(frozen=True)
class HaltResult:
    action: str  # "halt.fire" or "halt.lift"
    asset_class: str
    signal: str
    incident_id: str | None
    actor: str
    intent_seq: int
    outcome_seq: int
    delivered: bool
    webhook_status: int | None
    webhook_error: str | None
    envelope: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action, "asset_class": self.asset_class, "signal": self.signal,
            "incident_id": self.incident_id, "actor": self.actor,
            "intent_seq": self.intent_seq, "outcome_seq": self.outcome_seq,
            "delivered": self.delivered, "webhook_status": self.webhook_status,
            "webhook_error": self.webhook_error,
        }  # fmt: skip


class HaltHook:
    def __init__(self, manager: IncidentManager) -> None:
        self.manager = manager

    # --- reliance -------------------------------------------------------------------------

    def suspended(self) -> dict[str, dict[str, Any]]:
        """Suspended signals: ``{signal: {asset_class, incident_id, actor, at, ledger_seq}}``."""
        return self.manager.store.suspensions()

    def is_suspended(self, signal: str) -> bool:
        return signal in self.suspended()

    def reliance(self) -> dict[str, str]:
        """Every signal the policy names: ``relied-on`` or ``suspended``."""
        stopped = self.suspended()
        return {a.signal: "suspended" if a.signal in stopped else "relied-on"
                for a in self.manager.policy.assets.values()}  # fmt: skip

    # --- firing ---------------------------------------------------------------------------

    def fire(self, asset_class: str, *, actor: str | None, reason: str,
             incident_id: str | None = None) -> HaltResult:  # fmt: skip
        """Suspend reliance on ``asset_class``'s signal (see the module docstring)."""
        return self._act("halt.fire", asset_class, actor, reason, incident_id)

    def lift(self, asset_class: str, *, actor: str | None, reason: str,
             incident_id: str | None = None) -> HaltResult:  # fmt: skip
        """Rely on the signal again (same authorisation as :meth:`fire`)."""
        return self._act("halt.lift", asset_class, actor, reason, incident_id)

    def _act(self, action: str, asset_class: str, actor: str | None, reason: str,
             incident_id: str | None) -> HaltResult:  # fmt: skip
        manager = self.manager
        asset, incident = self._check(action, asset_class, reason, incident_id)
        who = actor or ANONYMOUS
        subject = [(f"signal:{asset.signal}", hashlib.sha256(asset.signal.encode()).hexdigest())]
        if incident is not None:
            subject.append((f"incident:{incident.id}", incident.digest()))
        with manager.ledger.action(
            action, actor=who, subject=subject, asset_class=asset_class, signal=asset.signal,
            incident_id=incident_id, reason=reason, webhook=asset.halt.webhook,
        ) as act:  # fmt: skip
            with manager._lock:  # only the state change: the webhook below may be slow
                self._authorise(asset, actor, action)
                self._apply(action, asset, incident_id, who, act.intent.seq)
            payload = self._payload(action, asset, who, reason, incident_id, act.intent)
            envelope = self._sign(payload)
            status, error = deliver(asset.halt.webhook, envelope.raw, asset.halt.timeout_s)
            act.result = {
                "signal": asset.signal,
                "suspended": sorted(self.suspended()),
                "webhook": {"url": asset.halt.webhook, "status": status, "error": error,
                            "delivered": error is None,
                            "envelope_sha256": hashlib.sha256(envelope.raw).hexdigest()},
            }  # fmt: skip
        result = HaltResult(action, asset_class, asset.signal, incident_id, who, act.intent.seq,
                            act.outcome.seq, error is None, status, error,
                            envelope.to_json())  # fmt: skip
        summary = None
        if incident is not None:
            with manager._lock:
                summary = self._remember(incident.id, result).summary()
        kind = "halt.fired" if action == "halt.fire" else "halt.lifted"
        manager.notify(IncidentEvent(kind, summary, who, act.intent.seq, payload))
        return result

    def _check(self, action: str, asset_class: str, reason: str, incident_id: str | None):
        """The asset's policy and the incident, or an error before anything is written."""
        manager = self.manager
        asset = manager.policy.asset(asset_class)  # unknown: error, nothing written
        if not isinstance(reason, str) or not reason.strip():
            raise IncidentError("reason", "expected a non-empty reason", reason)
        incident = None
        if incident_id is not None:
            incident = manager.store.get(incident_id)
            if incident.asset_class != asset_class:
                raise IncidentError(
                    "incident_id",
                    f"belongs to asset class {incident.asset_class!r}, not {asset_class!r}",
                    incident_id,
                )
        if action == "halt.lift" and not self.is_suspended(asset.signal):
            raise TransitionError("signal", f"{asset.signal!r} of asset class {asset_class!r} "
                                  "is not suspended: there is no halt to lift")  # fmt: skip
        return asset, incident

    def _apply(self, action: str, asset, incident_id: str | None, who: str, seq: int) -> None:
        if action == "halt.lift":
            self.manager.store.lift(asset.signal)
            return
        self.manager.store.suspend({
            "signal": asset.signal, "asset_class": asset.asset_class,
            "incident_id": incident_id, "actor": who, "at": rfc3339_now(), "ledger_seq": seq,
        })  # fmt: skip

    def _authorise(self, asset, actor: str | None, action: str) -> None:
        if not asset.halt.enabled:
            raise HaltRefused("halt.enabled", f"the deployer has not enabled the halt hook for "
                              f"asset class {asset.asset_class!r}", False)  # fmt: skip
        if actor is None or actor not in asset.halt.authorised:
            raise HaltRefused("actor", f"not authorised to {action.removeprefix('halt.')} the "
                              f"halt of asset class {asset.asset_class!r} (policy "
                              f"halt.authorised: {list(asset.halt.authorised)})",
                              actor or ANONYMOUS)  # fmt: skip

    def _payload(self, action, asset, actor, reason, incident_id, intent) -> dict[str, Any]:
        others = sorted(a.signal for a in self.manager.policy.assets.values()
                        if a.signal != asset.signal)  # fmt: skip
        return {
            "format": HALT_FORMAT,
            "action": action,
            "asset_class": asset.asset_class,
            "signal": asset.signal,
            "reliance": "suspended" if action == "halt.fire" else "relied-on",
            "other_signals_unchanged": others,
            "incident_id": incident_id,
            "actor": actor,
            "reason": reason,
            "at": rfc3339_now(),
            "ledger": {"intent": intent.ref()},
        }

    def _sign(self, payload: Mapping[str, Any]) -> Envelope:
        ledger = self.manager.ledger
        body = canonical_json(payload, "halt")
        if ledger.signer is not None:
            return sign_envelope_with(body, ledger.signer, HALT_PAYLOAD_TYPE)
        return sign_envelope(body, ledger._require_keyring().record, HALT_PAYLOAD_TYPE)

    def _remember(self, incident_id: str, result: HaltResult):
        store = self.manager.store
        incident = store.get(incident_id)
        incident.halts.append({**result.to_json(), "status": "succeeded", "at": rfc3339_now()})
        incident.ledger_seqs += [result.intent_seq, result.outcome_seq]
        store.replace(incident, expected_state=incident.state)
        return incident


def deliver(url: str | None, body: bytes, timeout: float) -> tuple[int | None, str | None]:
    """POST ``body`` to ``url``: ``(HTTP status, None)`` on 2xx, else ``(status, error)``."""
    if url is None:
        return None, "no webhook configured"
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "X-Lineage-Audit-Payload-Type": HALT_PAYLOAD_TYPE,
    })  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} {exc.reason}"[:MAX_ERROR]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"delivery failed: {reason}"[:MAX_ERROR]


def verify_halt_envelope(body: bytes | str, public_keys: Any) -> dict[str, Any]:
    """Verify a received halt envelope with the ledger's public keys; return its payload.

    ``public_keys``: a :class:`PublicKeys`, its JSON object, or a ``keys.pub.json`` path.
    Both signatures must verify (AND), over DSSE's PAE of the received payload bytes.
    Raises :class:`IncidentError` naming what failed.
    """
    keys = public_keys if isinstance(public_keys, PublicKeys) else load_public_keys(public_keys)
    trusted = _vcore.parse_keys(keys.to_json(), "public_keys")
    try:
        envelope = Envelope.from_bytes(body.encode() if isinstance(body, str) else body)
    except ValueError as exc:
        raise IncidentError("envelope", f"not a DSSE envelope ({exc})") from None
    if envelope.payload_type != HALT_PAYLOAD_TYPE:
        raise IncidentError("envelope.payloadType", f"expected {HALT_PAYLOAD_TYPE}",
                            envelope.payload_type)  # fmt: skip
    message = _vcore.pae(envelope.payload_type, envelope.payload)
    ecdsa_sig = envelope.signature(trusted.record_ecdsa_id)
    mldsa_sig = envelope.signature(trusted.record_mldsa_id)
    if ecdsa_sig is None or not _vcore.ecdsa_ok(trusted.record_ecdsa, ecdsa_sig, message):
        raise IncidentError("envelope.signatures", "ECDSA P-256 signature missing or invalid")
    if mldsa_sig is None or not _vcore.mldsa_ok(trusted.record_mldsa, mldsa_sig, message):
        raise IncidentError("envelope.signatures", "ML-DSA-65 signature missing or invalid")
    payload = json.loads(envelope.payload)
    if payload.get("format") != HALT_FORMAT:
        raise IncidentError("payload.format", f"expected {HALT_FORMAT}", payload.get("format"))
    return payload
