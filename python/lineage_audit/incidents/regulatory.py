"""The one table of regulatory citations: which requirement each artifact field supports.

Every field of the audit artifact is listed in :data:`CITATIONS` with the provisions it is
evidence for, from each framework in :data:`FRAMEWORKS`; :data:`SCOPE` says which framework
applies to what. The artifact and the HTML report both read this module only.

Clause numbers are given where the text is public and stable (SR 11-7's sections, the NIST
AI RMF subcategories, ISO/IEC 42001 Annex A controls, the AI Act's article paragraphs). For
SR 26-2 / OCC Bulletin 2026-13 the mapping is by topic (the successor guidance's section
numbering is to be confirmed against the issued text). This is a mapping of evidence to
requirements, not legal advice, and not by itself a finding of compliance.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CITATIONS", "DISCLAIMER", "FRAMEWORKS", "SCOPE", "citations_for"]

FRAMEWORKS: dict[str, dict[str, str]] = {
    "SR 11-7": {
        "title": "Federal Reserve SR 11-7 / OCC Bulletin 2011-12, Supervisory Guidance on "
        "Model Risk Management (2011)",
        "status": "rescinded 2026-04-17",
    },
    "SR 26-2": {
        "title": "Federal Reserve SR 26-2 / OCC Bulletin 2026-13, model risk management "
        "guidance superseding SR 11-7",
        "status": "in force from 2026-04-17",
    },
    "NIST AI RMF": {
        "title": "NIST AI 100-1, Artificial Intelligence Risk Management Framework 1.0 (2023)",
        "status": "voluntary framework",
    },
    "NIST AI 600-1": {
        "title": "NIST AI 600-1, AI RMF Generative Artificial Intelligence Profile (2024)",
        "status": "voluntary profile of the AI RMF",
    },
    "ISO/IEC 42001": {
        "title": "ISO/IEC 42001:2023, AI management system, Annex A (reference controls)",
        "status": "voluntary, certifiable management-system standard",
    },
    "EU AI Act": {
        "title": "Regulation (EU) 2024/1689 (Artificial Intelligence Act), Articles 10 and 12",
        "status": "law; obligations for high-risk AI systems",
    },
}

SCOPE: list[dict[str, str]] = [
    {
        "framework": "SR 11-7",
        "applies_to": "US banking organisations supervised by the Federal Reserve or the OCC, "
        "for models in use before 2026-04-17. Cited for continuity: evidence covering "
        "earlier periods is read against the guidance then in force.",
    },
    {
        "framework": "SR 26-2",
        "applies_to": "The same institutions from 2026-04-17: model risk management of the "
        "deployer's models, including AI models and their third-party data, monitoring and "
        "issue management.",
    },
    {
        "framework": "NIST AI RMF",
        "applies_to": "Any organisation that adopts it (voluntary); the subcategories cited "
        "are the GOVERN, MAP, MEASURE and MANAGE outcomes this evidence supports.",
    },
    {
        "framework": "NIST AI 600-1",
        "applies_to": "Generative AI systems of adopting organisations: the risks cited "
        "(information integrity, value chain and component integration, homogenization / "
        "model collapse) are the ones recursive contamination realises.",
    },
    {
        "framework": "ISO/IEC 42001",
        "applies_to": "Organisations operating (or certified to) an AI management system; "
        "the Annex A controls cited are those this artifact is a record for.",
    },
    {
        "framework": "EU AI Act",
        "applies_to": "High-risk AI systems placed on the market or used in the EU (e.g. "
        "creditworthiness assessment of natural persons, Annex III point 5(b)). Art. 10 "
        "(data governance) bears on data the deployer's model is trained or re-trained on; "
        "Art. 12 (record-keeping) on the automatic logs of the system's operation. Not "
        "applicable to systems outside the Act's high-risk scope.",
    },
]

DISCLAIMER = (
    "The citations map each field to the requirements it is evidence for. They are not legal "
    "advice and do not by themselves establish compliance."
)

_MONITORING = "SR 26-2 / OCC 2026-13: ongoing monitoring of models in use (by topic)"
_GOVERNANCE = "SR 26-2 / OCC 2026-13: governance, roles and issue management (by topic)"
_DATA = "SR 26-2 / OCC 2026-13: data quality and third-party data and models (by topic)"

CITATIONS: dict[str, list[str]] = {
    "incident": [
        "SR 11-7 §VI Governance, Policies, and Controls (roles and responsibilities)",
        _GOVERNANCE,
        "NIST AI RMF GOVERN 2.1; MANAGE 4.3 (incidents tracked, responded to, communicated)",
        "ISO/IEC 42001 A.3.2 AI roles and responsibilities; A.8.4 Communication of incidents",
        "EU AI Act Art. 12(2)(a) (events relevant to situations that may present a risk)",
    ],
    "triggers": [
        "SR 11-7 §V Model Validation (ongoing monitoring)",
        _MONITORING,
        "NIST AI RMF MEASURE 2.4 (behaviour monitored in production); MANAGE 4.1",
        "ISO/IEC 42001 A.6.2.6 AI system operation and monitoring",
        "EU AI Act Art. 12(2)(b), 12(2)(c) (post-market monitoring; monitoring of operation)",
    ],
    "confidence": [
        "SR 11-7 §V Model Validation (evaluation of conceptual soundness; outcomes analysis)",
        _MONITORING,
        "NIST AI RMF MEASURE 1.1 (approaches and metrics documented); MEASURE 2.4",
        "NIST AI 600-1 Information Integrity",
        "ISO/IEC 42001 A.6.2.4 AI system verification and validation",
        "EU AI Act Art. 12(2)(a)",
    ],
    "evidence.lineage": [
        "SR 11-7 §IV Model Development, Implementation, and Use (data quality and relevance)",
        _DATA,
        "NIST AI RMF MAP 4.1 (risks of third-party data and components)",
        "NIST AI 600-1 Value Chain and Component Integration",
        "ISO/IEC 42001 A.7.5 Data provenance",
        "EU AI Act Art. 10(2)(b) (data collection processes and the origin of data)",
    ],
    "evidence.divergence": [
        "SR 11-7 §V Model Validation (ongoing monitoring)",
        _MONITORING,
        "NIST AI RMF MEASURE 2.4",
        "NIST AI 600-1 Harmful Bias or Homogenization (model collapse); Information Integrity",
        "ISO/IEC 42001 A.6.2.6 AI system operation and monitoring; A.7.4 Quality of data",
        "EU AI Act Art. 10(3) (relevance and representativeness of data used for training); "
        "Art. 12(2)(c)",
    ],
    "evidence.attribution": [
        "SR 11-7 §IV (data quality and relevance)",
        _DATA,
        "NIST AI RMF MEASURE 2.4; MAP 4.1",
        "NIST AI 600-1 Information Integrity",
        "ISO/IEC 42001 A.7.5 Data provenance",
        "EU AI Act Art. 10(2)(b)",
    ],
    "evidence.thresholds": [
        "SR 11-7 §V (ongoing monitoring); §VI (documentation)",
        _MONITORING,
        "NIST AI RMF MEASURE 1.1; GOVERN 1.4 (risk management process documented)",
        "ISO/IEC 42001 A.6.2.6",
        "EU AI Act Art. 12(1) (automatic recording of events)",
    ],
    "evidence.ratings": [
        "SR 11-7 §V (vendor and other third-party products)",
        _DATA,
        "NIST AI RMF GOVERN 6.1 (third-party risks); MAP 4.1",
        "NIST AI 600-1 Value Chain and Component Integration",
        "ISO/IEC 42001 A.7.5 Data provenance; A.10.3 Suppliers",
        "EU AI Act Art. 10(2)(b)",
    ],
    "timeline": [
        "SR 11-7 §VI (documentation; issue tracking)",
        _GOVERNANCE,
        "NIST AI RMF MANAGE 4.3",
        "ISO/IEC 42001 A.8.4 Communication of incidents",
        "EU AI Act Art. 12(1), 12(2)(a)",
    ],
    "halts": [
        "SR 11-7 §IV (model use and its limits); §VI",
        _GOVERNANCE,
        "NIST AI RMF MANAGE 2.4 (mechanisms to supersede, disengage or deactivate)",
        "ISO/IEC 42001 A.6.2.6; A.9 Use of AI systems",
        "EU AI Act Art. 12(2)(a)",
    ],
    "ledger": [
        "SR 11-7 §VI (documentation)",
        _GOVERNANCE,
        "NIST AI RMF GOVERN 1.4; MANAGE 4.1",
        "ISO/IEC 42001 A.6.2.8 AI system recording of event logs",
        "EU AI Act Art. 12(1) (logs over the lifetime of the system)",
    ],
}


def citations_for(field: str) -> list[str]:
    """The citations of an artifact field (KeyError for a field not in the table)."""
    return CITATIONS[field]


def regulatory_json() -> dict[str, Any]:
    return {"frameworks": FRAMEWORKS, "scope": SCOPE, "disclaimer": DISCLAIMER,
            "citations": CITATIONS}  # fmt: skip
