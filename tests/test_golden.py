"""Golden files: one table of expected verdicts, every verifier reachable from Python.

The pure-Python verifier, the Rust extension and the `merkle-verify` binary must each give
the verdict `tests/golden/verdicts.json` lists (the Rust crate's own test and, later, the
browser page check the same table). The CLI's exit code must match too: 0 valid, 1
invalid, 2 unusable input.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
from lineage_audit import _merkle_verify as ext
from lineage_audit.ledger import load_public_keys
from lineage_audit.ledger.verify import verify_bundle_file

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = json.loads((GOLDEN / "verdicts.json").read_text())["cases"]
IDS = [f"{c['file']}[{c['pubkeys'] or 'unpinned'}]" for c in CASES]
ROOT = Path(__file__).resolve().parent.parent


def expected(case: dict) -> tuple[bool, str | None, int | None]:
    return case["valid"], case["reason"], case["seq"]


def merkle_verify_bin() -> Path:
    path = Path(os.environ.get("MERKLE_VERIFY_BIN", ROOT / "target/release/merkle-verify"))
    if not path.exists():
        pytest.fail(f"{path} is missing: build it with `make setup` (cargo build --release)")
    return path


def test_table_covers_every_mutation_named_by_the_issue():
    reasons = {c["reason"] for c in CASES}
    for needed in (
        "envelope_signature",
        "signature_missing",
        "inclusion",
        "chain",
        "checkpoint_signature",
        "leaf_mismatch",
        "consistency",
        "malformed",
        None,
    ):
        assert needed in reasons
    files = {c["file"] for c in CASES}
    assert files == {
        p.name
        for p in GOLDEN.iterdir()
        if p.suffix in (".json", ".tlog-proof") and p.name.endswith((".bundle.json", ".tlog-proof"))
    }


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pure_python_verifier(case):
    keys = load_public_keys(GOLDEN / case["pubkeys"]) if case["pubkeys"] else None
    verdict = verify_bundle_file(GOLDEN / case["file"], keys)
    assert (verdict.valid, verdict.reason, verdict.seq) == expected(case), verdict.message
    assert verdict.keys_pinned == (keys is not None)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rust_extension(case):
    data = (GOLDEN / case["file"]).read_bytes()
    keys = (GOLDEN / case["pubkeys"]).read_bytes() if case["pubkeys"] else None
    if case["file"].endswith(".tlog-proof"):
        verdict = ext.verify_tlog_proof(data.decode(), keys)
    else:
        verdict = ext.verify_bundle(data, keys)
    got = (verdict["valid"], verdict["reason"], verdict["seq"])
    assert got == expected(case), verdict["message"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_merkle_verify_cli(case):
    args = [str(merkle_verify_bin()), str(GOLDEN / case["file"]), "--json"]
    if case["pubkeys"]:
        args += ["--keys", str(GOLDEN / case["pubkeys"])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    want_exit = 0 if case["valid"] else (2 if case["reason"] == "malformed" else 1)
    assert done.returncode == want_exit, done.stdout + done.stderr
    assert "panicked" not in done.stderr
    verdict = json.loads(done.stdout)
    assert (verdict["valid"], verdict["reason"], verdict["seq"]) == expected(case)


def test_cli_one_line_names_reason_and_seq():
    done = subprocess.run(
        [
            str(merkle_verify_bin()),
            str(GOLDEN / "wrong-key.bundle.json"),
            "--keys",
            str(GOLDEN / "keys.pub.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("INVALID envelope_signature seq=5:"), lines


@pytest.mark.parametrize("name", ["valid-range.bundle.json", "valid.tlog-proof"])
def test_cli_never_panics_on_truncated_or_garbled_input(name: str, tmp_path: Path) -> None:
    """Every truncation point class and a few garbles: exit 1 or 2, one line, no panic."""
    data = (GOLDEN / name).read_bytes()
    cuts = sorted({0, 1, 2, 10, len(data) // 2, len(data) - 40, len(data) - 3})
    variants = [data[:cut] for cut in cuts]
    variants += [data.replace(b"=", b"-"), b"\xff\xfe" + data]
    if name.endswith(".tlog-proof"):  # (CRLF is mere whitespace to a JSON bundle)
        variants.append(data.replace(b"\n", b"\r\n"))
    for i, blob in enumerate(variants):
        path = tmp_path / f"v{i}-{name}"
        path.write_bytes(blob)
        done = subprocess.run(
            [str(merkle_verify_bin()), str(path), "--keys", str(GOLDEN / "keys.pub.json")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode in (1, 2), (i, done.stdout, done.stderr)
        assert "panicked" not in done.stderr and "internal error" not in done.stderr, i
        out = (done.stdout + done.stderr).strip().splitlines()
        assert len(out) == 1 and out[0].startswith(("INVALID ", "error: ")), (i, out)


def test_two_signed_records_claiming_one_seq_fail_inclusion_in_python_and_rust(tmp_path, keyring):
    """Crafted: entry 1 of another ledger with the same keys, added to a bundle. Each record
    binds its own envelope (step 4 passes); only one can be leaf 1 of the checkpoint."""
    import json as _json

    from lineage_audit import _merkle_verify
    from lineage_audit.ledger import Ledger, verify_bundle

    bundles = []
    for name in ("a", "b"):
        with Ledger.open(tmp_path / f"{name}.db", keyring) as ledger:
            for i in range(3):
                ledger.append("record", f"test.{name}", "tester", (), {"i": i})
            ledger.checkpoint()
            bundles.append(ledger.evidence_bundle([1]))
    crafted = dict(bundles[0])
    crafted["entries"] = [*bundles[0]["entries"], bundles[1]["entries"][0]]
    keys = keyring.public_keys()
    python = verify_bundle(crafted, keys)
    rust = _merkle_verify.verify_bundle(
        _json.dumps(crafted).encode(), _json.dumps(keys.to_json()).encode()
    )
    assert (python.reason, python.seq) == (rust["reason"], rust["seq"]) == ("inclusion", 1)


def test_a_tlog_proof_without_the_leaf_prefix_is_malformed_in_python_and_rust(keyring, tmp_path):
    import json as _json

    from lineage_audit import _merkle_verify
    from lineage_audit.ledger import Ledger
    from lineage_audit.ledger.verify import verify_tlog_proof

    with Ledger.open(tmp_path / "l.db", keyring) as ledger:
        ledger.append("record", "test", "tester", (), {})
        ledger.checkpoint()
        text = ledger.tlog_proof(0)
    lines = text.split("\n")
    assert lines[1].startswith("extra ")
    raw = bytearray(base64.b64decode(lines[1].removeprefix("extra ")))
    raw[0] ^= 0x01  # break the prefix, keep the length
    lines[1] = "extra " + base64.b64encode(bytes(raw)).decode()
    broken = "\n".join(lines)
    keys = keyring.public_keys()
    python = verify_tlog_proof(broken, keys)
    rust = _merkle_verify.verify_tlog_proof(broken, _json.dumps(keys.to_json()).encode())
    assert python.reason == rust["reason"] == "malformed"
    assert "prefix" in python.message and "prefix" in rust["message"]
