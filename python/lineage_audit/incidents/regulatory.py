"""The one table of regulatory citations: which requirement each artifact field supports.

Every field of the audit artifact is listed in :data:`CITATIONS` with the provisions it is
evidence for, from each framework in :data:`FRAMEWORKS` (title, status, the source the
citations were checked against and what was checked); :data:`SCOPE` says which framework
applies to what. The artifact and the HTML report both read this module only.

Checked on 2026-11-29 (docs/tier5.md, "Regulatory scope", lists the sources): SR 26-2 /
OCC Bulletin 2026-13 is cited by the section numbers and headings of the issued interagency
guidance (I-VII; its subsections were not checked); SR 11-7 by its section numbers; the NIST
AI RMF by subcategory; NIST AI 600-1 by risk and section number; ISO/IEC 42001 by Annex A
control number; the AI Act by article paragraph. This is a mapping of evidence to
requirements, not legal advice, and not by itself a finding of compliance.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CITATIONS", "DISCLAIMER", "FRAMEWORKS", "SCOPE", "citations_for"]

FRAMEWORKS: dict[str, dict[str, str]] = {
    "SR 11-7": {
        "title": "Federal Reserve SR 11-7 / OCC Bulletin 2011-12, Supervisory Guidance on "
        "Model Risk Management (2011; adopted by the FDIC in 2017, FIL-22-2017)",
        "status": "rescinded 2026-04-17 (superseded by SR 26-2)",
        "source": "https://www.frbsf.org/research-and-insights/publications/"
        "district-circular-letters/2011/05/guidelines-model-risk-management/",
        "checked": "section numbers IV-VI and their headings",
    },
    "SR 26-2": {
        "title": "Federal Reserve SR 26-2 / OCC Bulletin 2026-13 / FDIC FIL-15-2026, Revised "
        "Guidance on Model Risk Management (interagency, 2026)",
        "status": "issued 2026-04-17; supervisory guidance, not an enforceable standard",
        "source": "https://www.federalreserve.gov/supervisionreg/srletters/SR2602.htm; "
        "https://www.federalreserve.gov/frrs/guidance/"
        "supervisory-guidance-on-model-risk-management.htm; "
        "https://www.occ.gov/news-issuances/bulletins/2026/bulletin-2026-13.html; "
        "https://www.fdic.gov/news/press-releases/2026/agencies-issue-revised-model-risk-guidance",
        "checked": "issuing agencies, date, rescissions, applicability and the section "
        "numbers and headings I-VII; subsections not checked",
    },
    "NIST AI RMF": {
        "title": "NIST AI 100-1, Artificial Intelligence Risk Management Framework 1.0 (2023)",
        "status": "voluntary framework",
        "source": "https://doi.org/10.6028/NIST.AI.100-1",
        "checked": "subcategory numbers and wording",
    },
    "NIST AI 600-1": {
        "title": "NIST AI 600-1, AI RMF Generative Artificial Intelligence Profile (2024)",
        "status": "voluntary profile of the AI RMF",
        "source": "https://nvlpubs.nist.gov/nistpubs/ai/NIST.AI.600-1.pdf",
        "checked": "risk names and section numbers 2.1-2.12",
    },
    "ISO/IEC 42001": {
        "title": "ISO/IEC 42001:2023, AI management system, Annex A (reference controls)",
        "status": "voluntary, certifiable management-system standard",
        "source": "https://www.iso.org/standard/42001",
        "checked": "Annex A control numbers and titles (the standard is not public; checked "
        "against published control lists)",
    },
    "EU AI Act": {
        "title": "Regulation (EU) 2024/1689 (Artificial Intelligence Act), Articles 10 and 12, "
        "as amended by Regulation (EU) 2026/1744",
        "status": "law; Art. 10 and 12 apply to Annex III high-risk systems from 2027-12-02",
        "source": "https://eur-lex.europa.eu/eli/reg/2024/1689/oj; "
        "https://eur-lex.europa.eu/legal-content/EN/TXT/PDF/?uri=OJ%3AL_202601744",
        "checked": "Art. 10(2)-(4) and 12(1)-(3) wording; Art. 113 application dates",
    },
}

SCOPE: list[dict[str, str]] = [
    {
        "framework": "SR 11-7",
        "applies_to": "US banking organisations supervised by the Federal Reserve, the OCC "
        "or (from 2017) the FDIC, until its rescission on 2026-04-17. Cited only for evidence "
        "covering earlier periods, which is read against the guidance then in force.",
    },
    {
        "framework": "SR 26-2",
        "applies_to": "Banking organisations supervised by the Federal Reserve, the OCC or "
        "the FDIC, from 2026-04-17. The agencies expect it to matter mainly above USD 30 "
        "billion in total assets, and below that where model risk exposure is significant; "
        "it sets no enforceable standards. Generative AI and agentic AI models are outside "
        "its scope (the agencies announced a separate request for information on AI). So the "
        "deployer's generative model, whose output re-enters its own data, is not cited here "
        "as an SR 26-2 model (NIST AI 600-1 is the framework cited for it). The SR 26-2 "
        "citations apply to the models the guidance does cover (statistical and other "
        "quantitative models, including non-generative AI) that are trained on or consume the "
        "affected data: §IV Model Development and Model Use, §V Model Validation and "
        "Monitoring, §VI Governance and Controls, §VII Vendor and Other Third-Party Products.",
    },
    {
        "framework": "NIST AI RMF",
        "applies_to": "Any organisation that adopts it (voluntary); the subcategories cited "
        "are the GOVERN, MAP, MEASURE and MANAGE outcomes this evidence supports.",
    },
    {
        "framework": "NIST AI 600-1",
        "applies_to": "Generative AI systems of adopting organisations (voluntary), including "
        "the deployer's generative model that SR 26-2 leaves out. The risks cited are the ones "
        "recursive contamination realises: §2.6 Harmful Bias and Homogenization (which names "
        "model collapse from over-reliance on synthetic training data), §2.8 Information "
        "Integrity, §2.12 Value Chain and Component Integration.",
    },
    {
        "framework": "ISO/IEC 42001",
        "applies_to": "Organisations operating (or certified to) an AI management system; "
        "the Annex A controls cited are those this artifact is a record for.",
    },
    {
        "framework": "EU AI Act",
        "applies_to": "High-risk AI systems placed on the market or used in the EU (e.g. "
        "creditworthiness assessment or credit scoring of natural persons, Annex III point "
        "5(b); fraud detection is excluded there). Art. 10 (data governance of training, "
        "validation and testing data) and Art. 12 (automatic logs over the system's lifetime) "
        "belong to the high-risk requirements, which for Annex III systems apply from "
        "2027-12-02 (Art. 113 as amended by Regulation (EU) 2026/1744); evidence from before "
        "then is preparatory. Art. 12(3) (remote biometric identification) is not cited. Not "
        "applicable to systems outside the Act's high-risk scope.",
    },
]

DISCLAIMER = (
    "The citations map each field to the requirements it is evidence for. They are not legal "
    "advice and do not by themselves establish compliance."
)

_SR26 = "SR 26-2 / OCC 2026-13"
_SR26_IV = f"{_SR26} §IV Model Development and Model Use"
_SR26_V = f"{_SR26} §V Model Validation and Monitoring"
_SR26_VI = f"{_SR26} §VI Governance and Controls"
_SR26_VII = f"{_SR26} §VII Vendor and Other Third-Party Products"

CITATIONS: dict[str, list[str]] = {
    "incident": [
        "SR 11-7 §VI Governance, Policies, and Controls (roles and responsibilities)",
        _SR26_VI,
        "NIST AI RMF GOVERN 2.1 (roles, responsibilities, lines of communication); MANAGE "
        "4.3 (incidents tracked, responded to, communicated)",
        "ISO/IEC 42001 A.3.2 AI roles and responsibilities; A.8.4 Communication of incidents",
        "EU AI Act Art. 12(2)(a) (events relevant to identifying risk situations or a "
        "substantial modification)",
    ],
    "triggers": [
        "SR 11-7 §V Model Validation (ongoing monitoring)",
        _SR26_V,
        "NIST AI RMF MEASURE 2.4 (behaviour monitored in production); MANAGE 4.1 "
        "(post-deployment monitoring plans)",
        "ISO/IEC 42001 A.6.2.6 AI system operation and monitoring",
        "EU AI Act Art. 12(2)(b), 12(2)(c) (post-market monitoring under Art. 72; monitoring "
        "of operation under Art. 26(5))",
    ],
    "confidence": [
        "SR 11-7 §V Model Validation (evaluation of conceptual soundness; outcomes analysis)",
        _SR26_V,
        "NIST AI RMF MEASURE 1.1 (approaches and metrics selected and documented); MEASURE 2.4",
        "NIST AI 600-1 §2.6 Harmful Bias and Homogenization (model collapse)",
        "ISO/IEC 42001 A.6.2.4 AI system verification and validation",
        "EU AI Act Art. 12(2)(a)",
    ],
    "evidence.lineage": [
        "SR 11-7 §IV Model Development, Implementation, and Use (data quality and relevance)",
        f"{_SR26_IV}; §VII Vendor and Other Third-Party Products",
        "NIST AI RMF MAP 4.1 (risks of components, including third-party data and software)",
        "NIST AI 600-1 §2.12 Value Chain and Component Integration",
        "ISO/IEC 42001 A.7.5 Data provenance",
        "EU AI Act Art. 10(2)(b) (data collection processes and the origin of data)",
    ],
    "evidence.divergence": [
        "SR 11-7 §V Model Validation (ongoing monitoring)",
        _SR26_V,
        "NIST AI RMF MEASURE 2.4",
        "NIST AI 600-1 §2.6 Harmful Bias and Homogenization (model collapse)",
        "ISO/IEC 42001 A.6.2.6 AI system operation and monitoring; A.7.4 Quality of data for "
        "AI systems",
        "EU AI Act Art. 10(3) (training, validation and testing data relevant and "
        "sufficiently representative); Art. 12(2)(c)",
    ],
    "evidence.attribution": [
        "SR 11-7 §IV Model Development, Implementation, and Use (data quality and relevance)",
        f"{_SR26_IV}; §V Model Validation and Monitoring",
        "NIST AI RMF MEASURE 2.4; MAP 4.1",
        "NIST AI 600-1 §2.8 Information Integrity; §2.12 Value Chain and Component Integration",
        "ISO/IEC 42001 A.7.5 Data provenance",
        "EU AI Act Art. 10(2)(b)",
    ],
    "evidence.thresholds": [
        "SR 11-7 §V (ongoing monitoring); §VI (documentation)",
        f"{_SR26_V}; §VI Governance and Controls",
        "NIST AI RMF MEASURE 1.1; GOVERN 1.4 (risk management process and outcomes set "
        "through transparent policies and controls)",
        "ISO/IEC 42001 A.6.2.6 AI system operation and monitoring",
        "EU AI Act Art. 12(1) (automatic recording of events)",
    ],
    "evidence.ratings": [
        "SR 11-7 §V (validation of vendor and other third-party products)",
        _SR26_VII,
        "NIST AI RMF GOVERN 6.1 (third-party risks); MAP 4.1; MANAGE 3.1 (third-party "
        "resources monitored)",
        "NIST AI 600-1 §2.12 Value Chain and Component Integration",
        "ISO/IEC 42001 A.7.3 Acquisition of data; A.7.5 Data provenance; A.10.3 Suppliers",
        "EU AI Act Art. 10(2)(b)",
    ],
    "timeline": [
        "SR 11-7 §VI Governance, Policies, and Controls (documentation)",
        _SR26_VI,
        "NIST AI RMF MANAGE 4.3",
        "ISO/IEC 42001 A.8.4 Communication of incidents; A.6.2.8 AI system recording of event logs",
        "EU AI Act Art. 12(1), 12(2)(a)",
    ],
    "halts": [
        "SR 11-7 §IV (model use); §VI Governance, Policies, and Controls",
        f"{_SR26_IV}; §VI Governance and Controls",
        "NIST AI RMF MANAGE 2.4 (mechanisms to supersede, disengage or deactivate)",
        "ISO/IEC 42001 A.6.2.6 AI system operation and monitoring; A.9.4 Intended use of the "
        "AI system",
        "EU AI Act Art. 12(2)(a)",
    ],
    "ledger": [
        "SR 11-7 §VI (documentation)",
        _SR26_VI,
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
