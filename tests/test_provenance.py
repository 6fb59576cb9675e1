"""Tier 1 provenance on the real conformance fixtures: CycloneDX 1.6/1.7 ML-BOMs validated
with cyclonedx-python-lib, C2PA images read with c2pa-python offline, the rating rule, the
CLI and its ledger record."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import c2pa
import pytest
from conftest import CONFORMANCE, cli_env
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from jsonschema import Draft7Validator
from lineage_audit.ledger import Ledger
from lineage_audit.provenance import (
    CONFIDENCE,
    OFFLINE_SETTINGS,
    RATING_RULE,
    RATINGS,
    CheckResult,
    ProvenanceError,
    ProvenanceInputError,
    check_aibom,
    check_c2pa,
    check_openlineage,
    combine,
    offline_settings,
    rate_source,
)
from referencing import Registry
from referencing.jsonschema import DRAFT7

CDX = CONFORMANCE / "cyclonedx"
RESOURCES = CDX / "test-resources"
C2 = CONFORMANCE / "c2pa"
FIXTURES = C2 / "fixtures"
READING = FIXTURES / "files-for-reading-tests"
ES256_PEM = FIXTURES / "es256_certs.pem"
TEST_ROOTS = C2 / "trust_config_test_settings.json"  # the C2PA test roots as c2pa settings
ML_16 = RESOURCES / "1.6" / "valid-machine-learning-1.6.json"
INVALID_17 = RESOURCES / "1.7" / "invalid-citations-1.7.json"

VALID_BOMS = sorted(RESOURCES.glob("*/valid-*.json"))
INVALID_BOMS = sorted(RESOURCES.glob("*/invalid-*.json"))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- AIBOM ---------------------------------------------------------------------------------

# What each upstream fixture says about models and data, read by hand from the files.
EXPECTED_ML = {
    "valid-component-data": ([], [("my-configs", ["app.ini", ".env"])]),
    "valid-machine-learning": (
        [
            (
                "stable-diffusion",
                "CompVis",
                ["Training Data"],
                ["considerations", "modelParameters", "properties", "quantitativeAnalysis"],
            )
        ],
        [],
    ),
    "valid-machine-learning-considerations-env": (
        [("Llama-2-7b", "meta-llama", [], ["considerations"])],
        [],
    ),
    "valid-citations": ([], []),
}


def test_the_fixture_set_is_the_one_documented():
    assert [p.relative_to(RESOURCES).as_posix() for p in VALID_BOMS] == [
        "1.6/valid-component-data-1.6.json",
        "1.6/valid-machine-learning-1.6.json",
        "1.6/valid-machine-learning-considerations-env-1.6.json",
        "1.7/valid-citations-1.7.json",
        "1.7/valid-component-data-1.7.json",
        "1.7/valid-machine-learning-1.7.json",
        "1.7/valid-machine-learning-considerations-env-1.7.json",
    ]
    assert [p.name for p in INVALID_BOMS] == ["invalid-citations-1.7.json"]


@pytest.mark.parametrize("path", VALID_BOMS, ids=lambda p: p.name)
def test_valid_cyclonedx_fixtures_are_valid_with_model_card_and_data_read(path):
    result = check_aibom(path)
    spec = path.parent.name
    assert result.check == "aibom"
    assert result.state == "valid", result.reasons
    assert result.schema == f"CycloneDX {spec}"
    assert result.tool.startswith("cyclonedx-python-lib 11.12.0 ")
    assert result.details["spec_version"] == spec
    assert result.details["sha256"] == sha256_file(path)
    models, data = EXPECTED_ML[path.name.rsplit("-", 1)[0]]
    got_models = [
        (m["name"], m["group"], m["datasets"], m["model_card_sections"])
        for m in result.details["models"]
        if m["model_card"]
    ]
    assert got_models == models
    got_data = [
        (d["name"], [entry["name"] for entry in d["data"]])
        for d in result.details["data_components"]
    ]
    assert got_data == data
    assert len(result.details["models"]) == len(models)
    for model in result.details["models"]:
        assert f"model '{model['group']}/{model['name']}'" in result.reasons[1]
        assert "modelCard present" in result.reasons[1]
    if not models and not data:
        assert any("not an ML-BOM" in reason for reason in result.reasons)


def test_invalid_cyclonedx_fixture_is_invalid_naming_the_failures():
    result = check_aibom(INVALID_17)
    assert result.state == "invalid"
    assert result.schema == "CycloneDX 1.7"
    assert len(result.details["errors"]) == 3
    assert any(r.startswith("schema: /citations/0: ") for r in result.reasons)
    # The second citation has both a pointer and an expression: the oneOf says so.
    assert any(
        r.startswith("schema: /citations/1: ") and "(oneOf)" in r and "expressions" in r
        for r in result.reasons
    )


def _vendored_validator(spec: str) -> Draft7Validator:
    """The upstream specification's schema, resolved offline (an independent check)."""
    resources = []
    for path in (CDX / "schema").glob("*.schema.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], DRAFT7.create_resource(schema)))
    registry = Registry().with_resources(resources)
    schema = json.loads((CDX / "schema" / f"bom-{spec}.schema.json").read_text())
    return Draft7Validator(schema, registry=registry)


@pytest.mark.parametrize("path", VALID_BOMS + INVALID_BOMS, ids=lambda p: p.name)
def test_verdicts_agree_with_the_vendored_specification_schemas(path):
    document = json.loads(path.read_text())
    upstream_valid = _vendored_validator(document["specVersion"]).is_valid(document)
    assert upstream_valid == path.name.startswith("valid-")
    assert (check_aibom(path).state == "valid") == upstream_valid


def _mutated(tmp_path: Path, mutate) -> Path:
    document = json.loads(ML_16.read_text())
    mutate(document)
    out = tmp_path / "mutated.json"
    out.write_text(json.dumps(document))
    return out


@pytest.mark.parametrize("spec_version", ["9.9", "1.5", "2.0"])
def test_other_spec_versions_are_refused_naming_spec_version(tmp_path, spec_version):
    path = _mutated(tmp_path, lambda d: d.update(specVersion=spec_version))
    with pytest.raises(ProvenanceInputError) as caught:
        check_aibom(path)
    assert caught.value.field == "specVersion"
    assert spec_version in str(caught.value) and "1.6, 1.7" in str(caught.value)


MUTATIONS = {
    "missing component name": (
        lambda d: d["components"][0].pop("name"),
        "schema: /components/0: 'name' is a required property (required)",
    ),
    "missing bomFormat": (
        lambda d: d.pop("bomFormat"),
        "schema: (document): 'bomFormat' is a required property (required)",
    ),
    "unknown property (strict schema)": (
        lambda d: d.update(vendorExtension=True),
        "schema: (document): Additional properties are not allowed ('vendorExtension' was "
        "unexpected) (additionalProperties)",
    ),
    "modelCard of the wrong type": (
        lambda d: d["components"][0].update(modelCard="a card"),
        "schema: /components/0/modelCard: value is not of type 'object' (type)",
    ),
    "missing specVersion": (
        lambda d: d.pop("specVersion"),
        "specVersion: missing, so no CycloneDX schema can be chosen",
    ),
    "specVersion not a string": (
        lambda d: d.update(specVersion=1.6),
        "specVersion: expected a string, got 1.6",
    ),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_mutated_boms_are_invalid_with_the_failure_named(tmp_path, name):
    mutate, reason = MUTATIONS[name]
    path = _mutated(tmp_path, mutate)
    result = check_aibom(path)
    assert result.state == "invalid"
    assert reason in result.reasons


def test_unparseable_documents_are_invalid(tmp_path):
    text = ML_16.read_bytes()
    broken = check_aibom(text[: len(text) // 2])
    assert broken.state == "invalid"
    assert broken.reasons[0].startswith("not JSON: line ")
    assert check_aibom(b"[1, 2]").reasons == ("not a CycloneDX BOM: the document is a JSON list",)
    assert check_aibom(b"\xff\xfe{}").reasons[0].startswith("not UTF-8: byte 0")
    assert check_aibom(b"[]").state == "invalid"
    with pytest.raises(FileNotFoundError):
        check_aibom(tmp_path / "missing.json")
    with pytest.raises(ProvenanceInputError) as caught:
        check_aibom(42)
    assert caught.value.field == "aibom"


def test_bytes_and_path_give_the_same_result():
    by_path, by_bytes = check_aibom(ML_16), check_aibom(ML_16.read_bytes())
    assert by_bytes.state == by_path.state == "valid"
    assert by_bytes.reasons == by_path.reasons
    assert by_bytes.details["document"] == "<bytes>"
    assert {k: v for k, v in by_bytes.details.items() if k != "document"} == {
        k: v for k, v in by_path.details.items() if k != "document"
    }


def test_model_card_and_data_come_from_the_raw_json_including_nested_components(tmp_path):
    def nest(document):
        model = document["components"].pop(0)
        model["modelCard"]["modelParameters"]["datasets"].append({"ref": "training-set"})
        document["metadata"] = {"component": {"type": "application", "name": "app"}}
        document["components"] = [
            {
                "type": "application",
                "name": "serving",
                "components": [
                    model,
                    {
                        "type": "data",
                        "bom-ref": "training-set",
                        "name": "corpus",
                        "data": [{"type": "dataset", "name": "web-crawl-2026"}],
                    },
                ],
            }
        ]

    result = check_aibom(_mutated(tmp_path, nest))
    assert result.state == "valid", result.reasons
    assert [(m["pointer"], m["datasets"]) for m in result.details["models"]] == [
        ("/components/0/components/0", ["Training Data", "ref:training-set"])
    ]
    assert [(d["pointer"], d["data"][0]["name"]) for d in result.details["data_components"]] == [
        ("/components/0/components/1", "web-crawl-2026")
    ]
    assert result.details["components"] == 4  # metadata.component + 3 in the tree


# --- C2PA ----------------------------------------------------------------------------------

CONFIGS = {
    "none": {"trust_anchors": None},
    "test-roots": {"trust_anchors": None, "settings": TEST_ROOTS},
    "es256-pinned": {"trust_anchors": ES256_PEM},
}

# (asset, config) -> (state, reason that must appear first or a code that must appear)
C2PA_EXPECTED = {
    ("A.jpg", "none"): ("opaque", "no C2PA manifest in the asset"),
    ("A.jpg", "test-roots"): ("opaque", "no C2PA manifest in the asset"),
    ("C.jpg", "none"): ("valid", "signingCredential.untrusted"),
    ("C.jpg", "test-roots"): ("trusted", "signingCredential.trusted"),
    # C.jpg is signed with a PS256 test certificate, not the ES256 one in es256_certs.pem.
    ("C.jpg", "es256-pinned"): ("valid", "signingCredential.untrusted"),
    ("CA.jpg", "none"): ("valid", "signingCredential.untrusted"),
    ("CA.jpg", "test-roots"): ("trusted", "signingCredential.trusted"),
    ("CACAE-uri-CA.jpg", "none"): ("valid", "signingCredential.untrusted"),
    ("CACAE-uri-CA.jpg", "test-roots"): ("trusted", "signingCredential.trusted"),
    ("XCA.jpg", "none"): ("invalid", "assertion.dataHash.mismatch"),
    ("XCA.jpg", "test-roots"): ("invalid", "assertion.dataHash.mismatch"),
    ("E-sig-CA.jpg", "none"): ("invalid", "claimSignature.mismatch"),
    ("E-sig-CA.jpg", "test-roots"): ("invalid", "claimSignature.mismatch"),
    ("CIE-sig-CA.jpg", "none"): ("invalid", "claimSignature.mismatch in an ingredient"),
    ("CIE-sig-CA.jpg", "test-roots"): ("invalid", "claimSignature.mismatch in an ingredient"),
    ("cloud.jpg", "none"): ("unverifiable", "remote-only"),
    ("cloud.jpg", "test-roots"): ("unverifiable", "remote-only"),
}


def _asset(name: str) -> Path:
    return FIXTURES / name if (FIXTURES / name).exists() else READING / name


def test_every_c2pa_fixture_image_is_covered():
    images = {p.name for p in FIXTURES.glob("*.jpg")} | {p.name for p in READING.glob("*.jpg")}
    assert images == {asset for asset, _ in C2PA_EXPECTED}


@pytest.mark.parametrize("case", C2PA_EXPECTED, ids=lambda c: f"{c[0]}-{c[1]}")
def test_c2pa_fixture_states(case):
    asset, config = case
    state, expected = C2PA_EXPECTED[case]
    result = check_c2pa(_asset(asset), **CONFIGS[config])
    assert result.check == "c2pa"
    assert result.state == state, result.reasons
    assert expected in result.reasons[0], result.reasons
    assert result.tool.startswith("c2pa-python 0.38.1 (c2pa-rs ")
    assert result.details["sha256"] == sha256_file(_asset(asset))
    if state in ("trusted", "valid", "invalid"):
        assert result.schema == "C2PA claim v1"
        assert result.details["signer"]["common_name"] == "C2PA Signer"
        assert result.details["manifest_present"] is True
    if state == "invalid":
        assert expected.split()[0] in result.details["validation_codes"]["failure"]
    if state == "opaque":
        assert result.details["manifest_present"] is False and result.schema is None
    if state == "unverifiable":
        assert result.details["remote_url"].startswith("https://")
        assert "must fetch remote manifests" in result.details["error"]["message"]


def test_ingredient_chain_is_read():
    assert check_c2pa(READING / "CACAE-uri-CA.jpg", trust_anchors=None).details["ingredients"] >= 1
    assert check_c2pa(FIXTURES / "C.jpg", trust_anchors=None).details["ingredients"] == 0


@pytest.fixture(scope="module")
def es256_signed(tmp_path_factory) -> Path:
    """A.jpg signed here, offline (no timestamp authority), with the fixture's public ES256
    test key and certificate chain (es256_certs.pem)."""
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(
            b"es256", ES256_PEM.read_bytes(), (FIXTURES / "es256_private.key").read_bytes(), None
        )
    )
    manifest = {
        "claim_generator_info": [{"name": "lineage-audit-tests", "version": "1"}],
        "title": "signed.jpg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType":
                    "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}]},
            }
        ],
    }  # fmt: skip
    context = c2pa.Context.from_dict(
        {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
         "builder": {"thumbnail": {"enabled": False}}}
    )  # fmt: skip
    out = io.BytesIO()
    with c2pa.Builder(manifest, context=context) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO((FIXTURES / "A.jpg").read_bytes()), out)
    path = tmp_path_factory.mktemp("c2pa") / "signed-es256.jpg"
    path.write_bytes(out.getvalue())
    return path


def test_es256_signed_asset_is_trusted_only_with_its_anchor_pinned(es256_signed):
    pinned = check_c2pa(es256_signed, trust_anchors=ES256_PEM)
    assert pinned.state == "trusted", pinned.reasons
    assert pinned.details["signer"]["alg"].lower() == "es256"
    assert pinned.details["claim_generator"] == "lineage-audit-tests 1"
    expected = [
        c.fingerprint(hashes.SHA256()).hex()
        for c in x509.load_pem_x509_certificates(ES256_PEM.read_bytes())
    ]
    assert [a["sha256"] for a in pinned.details["trust_anchors"]] == expected
    assert pinned.details["settings"]["trust"]["trust_anchors"] == expected

    unpinned = check_c2pa(es256_signed, trust_anchors=None)
    assert unpinned.state == "valid"
    assert "no trust anchor is pinned (signingCredential.untrusted)" in unpinned.reasons[0]
    assert unpinned.details["trust_anchors"] == []
    # Its chain ends at the C2PA test root, so pinning the test roots trusts it too.
    assert check_c2pa(es256_signed, trust_anchors=None, settings=TEST_ROOTS).state == "trusted"


def test_anchors_from_settings_and_file_are_both_pinned(tmp_path, es256_signed):
    roots_only = tmp_path / "roots.json"
    roots = json.loads(TEST_ROOTS.read_text())
    roots_only.write_text(json.dumps({"trust": {"trust_anchors": roots["trust"]["trust_anchors"]}}))
    document = offline_settings(ES256_PEM, roots_only)
    pem = document["trust"]["trust_anchors"]
    assert pem.startswith(roots["trust"]["trust_anchors"].rstrip("\n"))
    assert pem.rstrip().endswith(ES256_PEM.read_text().rstrip())
    both = check_c2pa(FIXTURES / "C.jpg", trust_anchors=ES256_PEM, settings=roots_only)
    assert both.state == "trusted"
    assert len(both.details["trust_anchors"]) == pem.count("BEGIN CERTIFICATE")


def _flip_image_byte(data: bytes, offset: int) -> bytes:
    """XOR one entropy-coded byte, never creating or breaking a 0xFF marker prefix."""
    buffer = bytearray(data)
    while buffer[offset] == 0xFF or buffer[offset - 1] == 0xFF or buffer[offset] ^ 0x55 == 0xFF:
        offset += 1
    buffer[offset] ^= 0x55
    return bytes(buffer)


def test_tampered_image_data_is_an_invalid_finding(tmp_path):
    original = (FIXTURES / "C.jpg").read_bytes()
    intact = tmp_path / "intact.jpg"
    intact.write_bytes(original)
    tampered = tmp_path / "tampered.jpg"
    tampered.write_bytes(_flip_image_byte(original, len(original) - 200))
    assert check_c2pa(intact, trust_anchors=None, settings=TEST_ROOTS).state == "trusted"
    result = check_c2pa(tampered, trust_anchors=None, settings=TEST_ROOTS)
    assert result.state == "invalid"
    assert result.reasons[0].startswith("assertion.dataHash.mismatch: ")
    assert result.details["validation_codes"]["failure"] == ["assertion.dataHash.mismatch"]
    rating = rate_source("vendor", c2pa_assets=[tampered], c2pa_settings=TEST_ROOTS)
    assert rating.rating == "invalid" and rating.finding and rating.confidence == 0.0
    assert any("assertion.dataHash.mismatch" in reason for reason in rating.reasons)


def test_tampering_beats_a_trusted_signer(tmp_path, es256_signed):
    data = es256_signed.read_bytes()
    tampered = tmp_path / "tampered-es256.jpg"
    tampered.write_bytes(_flip_image_byte(data, len(data) - 300))
    result = check_c2pa(tampered, trust_anchors=ES256_PEM)
    assert result.state == "invalid"
    assert "assertion.dataHash.mismatch" in result.details["validation_codes"]["failure"]


def test_unreadable_manifest_is_invalid_and_unknown_formats_unverifiable(tmp_path):
    data = bytearray((FIXTURES / "C.jpg").read_bytes())
    data[100] ^= 0x55  # inside the JUMBF manifest store
    corrupt = tmp_path / "corrupt-manifest.jpg"
    corrupt.write_bytes(bytes(data))
    result = check_c2pa(corrupt, trust_anchors=None)
    assert result.state == "invalid"
    assert result.reasons[0].startswith("C2PA data or asset unreadable: ")

    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    result = check_c2pa(text, trust_anchors=None)
    assert result.state == "unverifiable"
    assert result.reasons[0].startswith("format not supported by the C2PA SDK")

    with pytest.raises(FileNotFoundError):
        check_c2pa(tmp_path / "missing.jpg", trust_anchors=None)


def test_bad_trust_anchors_and_settings_are_refused_naming_the_field(tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificates here\n")
    with pytest.raises(ProvenanceInputError) as caught:
        check_c2pa(FIXTURES / "C.jpg", trust_anchors=empty)
    assert caught.value.field == "trust_anchors"
    cases = {
        "settings.verify.remote_manifest_fetch": {"verify": {"remote_manifest_fetch": True}},
        "settings.verify.ocsp_fetch": {"verify": {"ocsp_fetch": True}},
        "settings.verify.verify_trust": {"verify": {"verify_trust": False}},
        "settings.core.allowed_network_hosts": {"core": {"allowed_network_hosts": ["a.test"]}},
        "settings.trust.trust_anchors": {"trust": {"trust_anchors": "not a PEM"}},
        "settings.trust": {"trust": []},
    }
    for field, document in cases.items():
        path = tmp_path / "settings.json"
        path.write_text(json.dumps(document))
        with pytest.raises(ProvenanceInputError) as caught:
            check_c2pa(FIXTURES / "C.jpg", trust_anchors=None, settings=path)
        assert caught.value.field == field
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    with pytest.raises(ProvenanceInputError) as caught:
        check_c2pa(FIXTURES / "C.jpg", trust_anchors=None, settings=path)
    assert caught.value.field == "settings"
    # Repeating the offline values is fine.
    path.write_text(json.dumps({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}))
    assert check_c2pa(FIXTURES / "C.jpg", trust_anchors=None, settings=path).state == "valid"


def test_settings_passed_to_the_library_disable_every_network_path():
    for document in (offline_settings(), offline_settings(ES256_PEM, TEST_ROOTS)):
        assert document["verify"]["remote_manifest_fetch"] is False
        assert document["verify"]["ocsp_fetch"] is False
        assert document["verify"]["verify_trust"] is True
        assert document["verify"]["verify_after_reading"] is True
        assert document["core"]["allowed_network_hosts"] == []
    assert OFFLINE_SETTINGS["verify"]["remote_manifest_fetch"] is False
    assert "trust" not in offline_settings()
    recorded = check_c2pa(FIXTURES / "C.jpg", trust_anchors=None).details["settings"]
    assert recorded == {
        "verify": dict(OFFLINE_SETTINGS["verify"]),
        "core": {"allowed_network_hosts": []},
    }


_NETNS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import c2pa
    from lineage_audit.provenance import check_c2pa
    reading, roots = Path(sys.argv[1]), Path(sys.argv[2])
    out = {}
    for name in ("cloud.jpg", "CA.jpg", "XCA.jpg"):
        result = check_c2pa(reading / name, trust_anchors=None, settings=roots)
        out[name] = [result.state, result.details.get("error", {}).get("message", "")]
    # Control: the same library with remote fetching left on does try the network.
    context = c2pa.Context.from_dict({"verify": {"remote_manifest_fetch": True}})
    try:
        c2pa.Reader(str(reading / "cloud.jpg"), context=context)
        out["control"] = "read"
    except c2pa.C2paError as error:
        out["control"] = str(error)
    print(json.dumps(out))
    """
)


def test_checks_succeed_with_no_network_at_all():
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"]).returncode != 0:
        pytest.skip("needs `unshare -n` (a network namespace) to take the network away")
    env = cli_env()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env[name] = "http://127.0.0.1:9"  # and any proxy is a closed port
    completed = subprocess.run(
        [unshare, "-n", sys.executable, "-c", _NETNS_SCRIPT, str(READING), str(TEST_ROOTS)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    out = json.loads(completed.stdout)
    assert out["CA.jpg"][0] == "trusted"
    assert out["XCA.jpg"][0] == "invalid"
    assert out["cloud.jpg"][0] == "unverifiable"
    assert "must fetch remote manifests" in out["cloud.jpg"][1]  # refused, not attempted
    assert "could not fetch the remote manifest" in out["control"]  # attempted, and failed


# --- OpenLineage ---------------------------------------------------------------------------


def test_openlineage_presence():
    present = check_openlineage(3)
    assert (present.state, present.details) == ("present", {"events": 3})
    assert present.reasons == ("3 OpenLineage events recorded for the source",)
    assert check_openlineage(1).reasons == ("1 OpenLineage event recorded for the source",)
    assert check_openlineage(0).state == "absent"
    named = check_openlineage(2, tool="jsonschema 4.26.0", schema="OpenLineage 2-0-2")
    assert (named.tool, named.schema) == ("jsonschema 4.26.0", "OpenLineage 2-0-2")
    for bad in (-1, True, "3", 2.0, None):
        with pytest.raises(ProvenanceInputError) as caught:
            check_openlineage(bad)
        assert caught.value.field == "openlineage_events"


# --- the rating rule -----------------------------------------------------------------------


def test_confidence_is_a_documented_monotone_function_of_the_rating():
    assert RATINGS == ("trusted", "valid", "unverifiable", "opaque", "invalid")
    assert set(CONFIDENCE) == set(RATINGS)
    values = [CONFIDENCE[r] for r in RATINGS]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values)
    assert values[0] == 1.0 and values[-1] == 0.0


def test_opaque_only_when_openlineage_aibom_and_c2pa_are_all_absent():
    nothing = rate_source("s")
    assert (nothing.rating, nothing.confidence) == ("opaque", 0.3)
    assert [c.state for c in nothing.checks] == ["absent", "absent"]
    assert rate_source("s", c2pa_assets=[FIXTURES / "A.jpg"]).rating == "opaque"
    # Any one of the three lifts it.
    assert rate_source("s", openlineage_events=1).rating == "valid"
    assert rate_source("s", aibom=ML_16).rating == "valid"
    assert rate_source("s", c2pa_assets=[FIXTURES / "C.jpg"]).rating == "valid"
    assert rate_source("s", c2pa_assets=[READING / "cloud.jpg"]).rating == "unverifiable"


def test_invalid_anywhere_wins_as_a_finding(es256_signed):
    tampered = rate_source(
        "s", aibom=ML_16, openlineage_events=5, trust_anchors=ES256_PEM,
        c2pa_assets=[es256_signed, READING / "XCA.jpg"],
    )  # fmt: skip
    assert (tampered.rating, tampered.confidence, tampered.finding) == ("invalid", 0.0, True)
    assert tampered.reasons[0].startswith(f"finding: c2pa {READING / 'XCA.jpg'}: ")
    assert "assertion.dataHash.mismatch" in tampered.reasons[0]
    bad_bom = rate_source(
        "s", aibom=INVALID_17, c2pa_assets=[es256_signed], trust_anchors=ES256_PEM
    )
    assert bad_bom.rating == "invalid"
    assert bad_bom.reasons[0].startswith("finding: aibom: schema: /citations/0: ")


def test_trusted_needs_every_c2pa_asset_trusted(es256_signed):
    pinned = {"trust_anchors": ES256_PEM}
    alone = rate_source("s", c2pa_assets=[es256_signed], **pinned)
    assert (alone.rating, alone.confidence) == ("trusted", 1.0)
    with_more = rate_source(
        "s", aibom=ML_16, openlineage_events=2, c2pa_assets=[es256_signed], **pinned
    )
    assert with_more.rating == "trusted"
    plus_unsigned = rate_source("s", c2pa_assets=[es256_signed, FIXTURES / "A.jpg"], **pinned)
    assert plus_unsigned.rating == "valid"
    assert f"not trusted: c2pa {FIXTURES / 'A.jpg'}: opaque: no C2PA manifest in the asset" in (
        plus_unsigned.reasons
    )
    plus_untrusted = rate_source("s", c2pa_assets=[es256_signed, FIXTURES / "C.jpg"], **pinned)
    assert plus_untrusted.rating == "valid"
    assert rate_source("s", aibom=ML_16, openlineage_events=9).reasons[-1] == (
        "not trusted: no C2PA asset was checked"
    )


def test_unverifiable_when_the_only_evidence_cannot_be_checked_offline():
    cloud = READING / "cloud.jpg"
    assert rate_source("s", c2pa_assets=[cloud, FIXTURES / "A.jpg"]).rating == "unverifiable"
    alone = rate_source("s", c2pa_assets=[cloud])
    assert (alone.rating, alone.confidence) == ("unverifiable", 0.5)
    assert "remote-only" in alone.reasons[0]
    assert rate_source("s", c2pa_assets=[cloud], openlineage_events=1).rating == "valid"


def test_precomputed_checks_are_combined_by_the_same_rule():
    aibom = check_aibom(ML_16)
    asset = check_c2pa(FIXTURES / "C.jpg", trust_anchors=None, settings=TEST_ROOTS)
    rating = rate_source("s", aibom=aibom, c2pa_assets=[asset], openlineage_events=3)
    assert rating.checks[0] is aibom and rating.checks[2] is asset
    assert rating == combine("s", [aibom, check_openlineage(3), asset])
    assert rating.rating == "trusted"
    with pytest.raises(ProvenanceInputError) as caught:
        rate_source("s", aibom=asset)
    assert caught.value.field == "aibom"


def test_rating_arguments_are_checked():
    for kwargs, field in (
        ({"source": ""}, "source"),
        ({"source": "s", "c2pa_assets": str(FIXTURES / "C.jpg")}, "c2pa_assets"),
        ({"source": "s", "openlineage_events": -1}, "openlineage_events"),
    ):
        with pytest.raises(ProvenanceInputError) as caught:
            rate_source(**kwargs)
        assert caught.value.field == field
    with pytest.raises(ProvenanceInputError) as caught:
        CheckResult("c2pa", "present", (), "tool", None)
    assert caught.value.field == "c2pa.state"


def test_rating_json_is_complete_and_serialisable():
    rating = rate_source("vendor-a", aibom=ML_16, c2pa_assets=[FIXTURES / "C.jpg"])
    document = json.loads(json.dumps(rating.to_json()))
    assert document["source"] == "vendor-a"
    assert (document["rating"], document["confidence"], document["finding"]) == (
        "valid", 0.8, False,
    )  # fmt: skip
    assert document["rule"] == RATING_RULE
    assert [c["check"] for c in document["checks"]] == ["aibom", "openlineage", "c2pa"]
    assert [c["tool"].split()[0] for c in document["checks"]] == [
        "cyclonedx-python-lib", "lineage-audit", "c2pa-python",
    ]  # fmt: skip
    assert document["checks"][2]["details"]["validation_codes"]["failure"] == [
        "signingCredential.untrusted"
    ]


# --- CLI -----------------------------------------------------------------------------------


def test_cli_prints_a_readable_rating(cli):
    code, out, err = cli(
        "provenance", "check", "--source", "vendor-a", "--aibom", ML_16,
        "--c2pa", FIXTURES / "C.jpg", FIXTURES / "A.jpg", "--c2pa-settings", TEST_ROOTS,
        "--openlineage-events", "4",
    )  # fmt: skip
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "source vendor-a: valid (confidence 0.80)"
    assert "  aibom: valid  [CycloneDX 1.6; cyclonedx-python-lib 11.12.0 (jsonschema 4.26.0)]" in (
        lines
    )
    assert any(line.startswith(f"  c2pa {FIXTURES / 'C.jpg'}: trusted  [") for line in lines)
    assert any(line.startswith(f"  c2pa {FIXTURES / 'A.jpg'}: opaque  [") for line in lines)


def test_cli_json_and_exit_code_of_a_finding(cli):
    code, out, _ = cli("provenance", "check", "--source", "v", "--c2pa", READING / "XCA.jpg",
                       "--json")  # fmt: skip
    assert code == 1
    document = json.loads(out)
    assert (document["rating"], document["finding"]) == ("invalid", True)
    assert document == rate_source("v", c2pa_assets=[READING / "XCA.jpg"]).to_json()


def test_cli_errors_are_clear(cli, tmp_path):
    bom = _mutated(tmp_path, lambda d: d.update(specVersion="9.9"))
    code, out, err = cli("provenance", "check", "--source", "v", "--aibom", bom)
    assert (code, out) == (2, "")
    assert err.startswith("error: specVersion: CycloneDX 9.9 is not checked here")
    code, _, err = cli("provenance", "check", "--source", "v", "--db", tmp_path / "l.db")
    assert code == 2 and err.startswith("error: --keys: ")
    code, _, err = cli("provenance", "check", "--source", "v", "--c2pa", tmp_path / "nope.jpg")
    assert code == 2 and "No such file or directory" in err
    assert not (tmp_path / "l.db").exists()


def test_cli_records_the_check_in_the_ledger(cli, tmp_path, keys_dir):
    db = tmp_path / "audit.db"
    code, out, _ = cli(
        "provenance", "check", "--source", "vendor-a", "--aibom", ML_16,
        "--c2pa", FIXTURES / "C.jpg", "--db", db, "--keys", keys_dir, "--actor", "user:alice",
        "--json",
    )  # fmt: skip
    assert code == 0
    document = json.loads(out)
    assert document.pop("ledger") == {"intent_seq": 0, "outcome_seq": 1}
    with Ledger.open(db) as ledger:
        entries = list(ledger.entries())
    assert [e.kind for e in entries] == ["intent", "outcome"]
    statements = [e.statement() for e in entries]
    for statement in statements:
        assert statement["predicate"]["action"] == "provenance.check"
        assert statement["predicate"]["actor"] == "user:alice"
        assert statement["subject"] == [
            {"name": f"aibom:{ML_16}", "digest": {"sha256": sha256_file(ML_16)}},
            {"name": f"c2pa:{FIXTURES / 'C.jpg'}",
             "digest": {"sha256": sha256_file(FIXTURES / "C.jpg")}},
        ]  # fmt: skip
    assert statements[0]["predicate"]["source"] == "vendor-a"
    outcome = statements[1]["predicate"]
    assert outcome["status"] == "succeeded"
    assert outcome["result"] == document


def test_cli_records_a_refused_check_as_failed(cli, tmp_path, keys_dir):
    db = tmp_path / "audit.db"
    bom = _mutated(tmp_path, lambda d: d.update(specVersion="9.9"))
    code, _, err = cli(
        "provenance", "check", "--source", "v", "--aibom", bom, "--db", db, "--keys", keys_dir
    )
    assert code == 2 and err.startswith("error: specVersion: ")
    with Ledger.open(db) as ledger:
        outcome = list(ledger.entries())[-1].statement()["predicate"]
    assert outcome["status"] == "failed"
    assert outcome["error"]["message"].startswith("specVersion: ")


def test_provenance_error_is_a_package_error():
    from lineage_audit.errors import FieldError, LineageAuditError

    assert issubclass(ProvenanceError, LineageAuditError)
    assert issubclass(ProvenanceInputError, FieldError)
