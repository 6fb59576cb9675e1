"""Tier 5: incidents, the halt hook and the audit artifact (DESIGN §6, docs/tier5.md).

One module per concern: ``policy`` (the TOML policy per asset class), ``triggers`` (Tier 3
alerts, Tier 2 findings, Tier 4 batches; what the policy lets fire), ``evidence`` (gathered
from the tiers' records), ``confidence`` (the documented monotone rule, step by step),
``incident`` (states open → acknowledged → resolved), ``store`` (SQLite), ``manager``
(every change a write-ahead ledger action), ``halt`` (the halt hook: authorisation,
suspension of one signal, DSSE-signed webhook), ``regulatory`` (the one table of
citations), ``artifact`` (the JSON artifact and its schema), ``report`` (self-contained
HTML, optional PDF), ``http_api`` and ``cli`` (the model risk officer's queue; its gRPC
service is :mod:`lineage_audit.server.incidents_rpc`, wired by ``server.incident_side``).
"""

from __future__ import annotations

from .confidence import RULE, ConfidenceInputs, ConfidenceResult, compute_confidence
from .errors import (
    HaltRefused,
    IncidentError,
    NotAuthorised,
    PolicyError,
    TransitionError,
    UnknownAsset,
    UnknownIncident,
)
from .evidence import (
    Evidence,
    attribution_evidence,
    divergence_evidence,
    lineage_evidence,
    rating_evidence,
    threshold_history,
)
from .halt import HALT_PAYLOAD_TYPE, HaltHook, HaltResult, verify_halt_envelope
from .incident import STATES, Incident
from .manager import IncidentEvent, IncidentManager
from .policy import AssetPolicy, Policy, load_policy, parse_policy
from .store import IncidentStore
from .triggers import (
    AlertTriggers,
    Trigger,
    fires,
    trigger_from_alert,
    trigger_from_attribution,
    triggers_from_lineage,
)

__all__ = [
    "HALT_PAYLOAD_TYPE",
    "RULE",
    "STATES",
    "AlertTriggers",
    "AssetPolicy",
    "ConfidenceInputs",
    "ConfidenceResult",
    "Evidence",
    "HaltHook",
    "HaltRefused",
    "HaltResult",
    "Incident",
    "IncidentError",
    "IncidentEvent",
    "IncidentManager",
    "IncidentStore",
    "NotAuthorised",
    "Policy",
    "PolicyError",
    "TransitionError",
    "Trigger",
    "UnknownAsset",
    "UnknownIncident",
    "attribution_evidence",
    "compute_confidence",
    "divergence_evidence",
    "fires",
    "lineage_evidence",
    "load_policy",
    "parse_policy",
    "rating_evidence",
    "threshold_history",
    "trigger_from_alert",
    "trigger_from_attribution",
    "triggers_from_lineage",
    "verify_halt_envelope",
]
