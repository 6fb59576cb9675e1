"""The typed stub `_merkle_verify.pyi` and the built extension name the same functions."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from lineage_audit import _merkle_verify as ext

STUB = Path(__file__).resolve().parents[1] / "python" / "lineage_audit" / "_merkle_verify.pyi"
ISSUE_NAMES = {
    "leaf_hash", "node_hash", "root", "inclusion_proof", "consistency_proof",
    "verify_inclusion", "verify_consistency", "verify_inclusion_batch", "verify_chain",
    "verify_envelopes", "verify_bundle",
}  # fmt: skip


def _stub_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(STUB.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_stub_and_module_agree() -> None:
    built = {name for name, obj in vars(ext).items() if callable(obj) and not name.startswith("_")}
    assert set(_stub_functions()) == built
    assert built >= ISSUE_NAMES


def test_stub_parameters_match_the_module() -> None:
    for name, node in _stub_functions().items():
        stub_params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
        try:
            real = list(inspect.signature(getattr(ext, name)).parameters)
        except (TypeError, ValueError):  # no text signature: nothing to compare
            continue
        assert stub_params == real, name
