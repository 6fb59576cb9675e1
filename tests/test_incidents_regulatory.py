"""The regulatory table (incidents/regulatory.py) against the texts it was checked against:
every artifact field the schema requires is cited, every framework has a source and a scope
statement, SR 26-2 is cited by the issued guidance's section numbers and headings, and the
other frameworks' clause ids are ones that exist (NIST AI 600-1 section numbers, ISO/IEC
42001 Annex A control numbers and titles, the AI Act paragraphs cited)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from lineage_audit.incidents import regulatory
from lineage_audit.incidents.regulatory import (
    CITATIONS,
    FRAMEWORKS,
    SCOPE,
    citations_for,
    regulatory_json,
)

SCHEMA = (Path(regulatory.__file__).parent / "artifact.schema.json").read_text(encoding="utf-8")

# Revised Guidance on Model Risk Management (SR 26-2 / OCC Bulletin 2026-13), as issued.
SR26_SECTIONS = {
    "I": "Introduction",
    "II": "Purpose and Scope",
    "III": "Overview of Model Risk and Model Risk Management",
    "IV": "Model Development and Model Use",
    "V": "Model Validation and Monitoring",
    "VI": "Governance and Controls",
    "VII": "Vendor and Other Third-Party Products",
}
SR11_SECTIONS = {
    "IV": "Model Development, Implementation, and Use",
    "V": "Model Validation",
    "VI": "Governance, Policies, and Controls",
}
NIST_600_1 = {
    "2.6": "Harmful Bias and Homogenization",
    "2.8": "Information Integrity",
    "2.12": "Value Chain and Component Integration",
}
ISO_42001 = {
    "A.3.2": "AI roles and responsibilities",
    "A.6.2.4": "AI system verification and validation",
    "A.6.2.6": "AI system operation and monitoring",
    "A.6.2.8": "AI system recording of event logs",
    "A.7.3": "Acquisition of data",
    "A.7.4": "Quality of data for AI systems",
    "A.7.5": "Data provenance",
    "A.8.4": "Communication of incidents",
    "A.9.4": "Intended use of the AI system",
    "A.10.3": "Suppliers",
}
NIST_RMF = {"GOVERN 1.4", "GOVERN 2.1", "GOVERN 6.1", "MAP 4.1", "MEASURE 1.1",
            "MEASURE 2.4", "MANAGE 2.4", "MANAGE 3.1", "MANAGE 4.1", "MANAGE 4.3"}  # fmt: skip
AI_ACT = {"10(2)(b)", "10(3)", "12(1)", "12(2)(a)", "12(2)(b)", "12(2)(c)"}


def _schema_regulatory() -> dict:
    return json.loads(SCHEMA)["properties"]["regulatory"]["properties"]


def _all() -> list[str]:
    return [c for cites in CITATIONS.values() for c in cites]


def test_the_table_covers_what_the_schema_requires():
    schema = _schema_regulatory()
    assert set(CITATIONS) == set(schema["citations"]["required"])
    assert set(FRAMEWORKS) == set(schema["frameworks"]["required"])
    assert all(len(cites) >= 5 for cites in CITATIONS.values())
    assert json.loads(json.dumps(regulatory_json()))["citations"] == CITATIONS
    assert citations_for("ledger") is CITATIONS["ledger"]
    with pytest.raises(KeyError):
        citations_for("evidence.digests")


def test_every_framework_has_a_source_and_one_scope_statement():
    for name, fw in FRAMEWORKS.items():
        assert {"title", "status", "source", "checked"} <= set(fw), name
        assert all(u.startswith("https://") for u in fw["source"].split("; ")), name
    assert sorted(s["framework"] for s in SCOPE) == sorted(FRAMEWORKS)


def test_every_field_is_cited_to_the_banking_and_general_frameworks():
    for field, cites in CITATIONS.items():
        for prefix in ("SR 11-7 §", "SR 26-2 / OCC 2026-13 §", "NIST AI RMF ", "ISO/IEC 42001 ",
                       "EU AI Act Art. "):  # fmt: skip
            assert any(c.startswith(prefix) for c in cites), (field, prefix)


def test_sr_26_2_is_cited_by_the_issued_section_headings():
    cited = [c for c in _all() if c.startswith("SR 26-2")]
    assert cited and not any("by topic" in c for c in cited)
    for c in cited:
        refs = re.findall(r"§([IVX]+) ([^;]+)", c)
        assert refs, c
        for number, heading in refs:
            assert SR26_SECTIONS[number] == heading.strip(), c
    for c in (c for c in _all() if c.startswith("SR 11-7")):
        for number, heading in re.findall(r"§([IVX]+)(?: ([A-Z][^;(]+))?", c):
            assert number in SR11_SECTIONS, c
            assert not heading or SR11_SECTIONS[number] == heading.strip(), c


def test_the_sr_26_2_scope_says_what_the_generative_ai_exclusion_means():
    text = next(s["applies_to"] for s in SCOPE if s["framework"] == "SR 26-2")
    assert "Generative AI and agentic AI models are outside" in text
    assert "not cited here" in text and "NIST AI 600-1" in text
    assert "USD 30 billion" in text and "no enforceable standards" in text
    for number in ("IV", "V", "VI", "VII"):
        assert f"§{number} {SR26_SECTIONS[number]}" in text


def test_the_other_clause_ids_exist():
    text = "\n".join(_all())
    for number, name in re.findall(r"NIST AI 600-1 §(\d+\.\d+) ([A-Z][^;(\n]+)", text):
        assert NIST_600_1[number] == name.strip()
    for ref in re.findall(r"\b(GOVERN|MAP|MEASURE|MANAGE) (\d+\.\d+)", text):
        assert " ".join(ref) in NIST_RMF, ref
    for c in (c for c in _all() if c.startswith("ISO/IEC 42001")):
        for number, title in re.findall(r"(A\.\d+(?:\.\d+)*) ([A-Z][^;]*)", c):
            assert ISO_42001[number] == title.strip(), c
    for c in (c for c in _all() if c.startswith("EU AI Act")):
        for para in re.findall(r"\b(1[02]\(\d\)(?:\([a-h]\))?)", c):
            assert para in AI_ACT, c
    ai_act = next(s["applies_to"] for s in SCOPE if s["framework"] == "EU AI Act")
    assert "2027-12-02" in ai_act and "2026/1744" in ai_act
