"""Evidence bundles (docs §6): the JSON a stranger verifies offline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .codec import b64encode
from .errors import FormatError
from .keys import PublicKeys
from .store import StoredEntry

__all__ = ["BUNDLE_FORMAT", "BUNDLE_KINDS", "build_bundle"]

BUNDLE_FORMAT = "lineage-audit/evidence-bundle/v1"
BUNDLE_KINDS = ("evidence", "lineage-path")


def build_bundle(
    checkpoint_note: str,
    keys: PublicKeys,
    entries: Sequence[tuple[StoredEntry, Sequence[bytes]]],
    consistency: tuple[str, Sequence[bytes]] | None = None,
    kind: str = "evidence",
) -> dict[str, Any]:
    """The bundle object: checkpoint, keys, entries with inclusion proofs, consistency."""
    if kind not in BUNDLE_KINDS:
        raise FormatError("kind", f"expected one of {BUNDLE_KINDS}", kind)
    return {
        "format": BUNDLE_FORMAT,
        "kind": kind,
        "checkpoint": checkpoint_note,
        "keys": keys.to_json(with_format=False),
        "entries": [
            {
                "seq": entry.seq,
                "leaf_input": b64encode(entry.leaf_input),
                "envelope": json.loads(entry.envelope),
                "inclusion_proof": [b64encode(item) for item in proof],
            }
            for entry, proof in entries
        ],
        "consistency": None
        if consistency is None
        else {
            "old_checkpoint": consistency[0],
            "proof": [b64encode(item) for item in consistency[1]],
        },
    }
