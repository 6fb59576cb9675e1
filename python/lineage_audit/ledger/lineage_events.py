"""Step 8 of bundle verification: the ``events`` of a lineage path proof (docs/formats.md
§6.1). Each event's canonical JSON must be leaf ``index`` of the batch whose root a
``lineage.ingest`` intent of the bundle signs (subject ``openlineage-batch:<size>``). Runs
after steps 1-7, so the roots read here are signed."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from . import _vcore as v

__all__ = ["BATCH_SUBJECT", "check_events"]

BATCH_SUBJECT = "openlineage-batch:"
MAX_PATH_HASHES = 64


def _batch_roots(entries: Sequence[Mapping[str, Any]]) -> dict[int, tuple[int, bytes]]:
    roots = {}
    for entry in entries:
        try:
            statement = json.loads(base64.b64decode(entry["envelope"]["payload"]))
        except (KeyError, TypeError, ValueError, binascii.Error):
            continue
        for subject in statement.get("subject") or []:
            name = subject.get("name", "") if isinstance(subject, dict) else ""
            if not name.startswith(BATCH_SUBJECT):
                continue
            try:
                size = int(name.removeprefix(BATCH_SUBJECT))
                roots[int(entry["seq"])] = (size, bytes.fromhex(subject["digest"]["sha256"]))
            except (KeyError, TypeError, ValueError):
                continue
    return roots


def _decoded(item: Any, i: int) -> tuple[int, int, int, bytes, list[bytes]]:
    """The item's fields, or ``("malformed", message)`` raised as ValueError."""
    try:
        seq, index, size = (int(item[k]) for k in ("record_seq", "index", "size"))
        body = base64.b64decode(item["event"], validate=True)
        path = [base64.b64decode(h, validate=True) for h in item["path"]]
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"events[{i}]: malformed ({exc})") from None
    if len(path) > MAX_PATH_HASHES or any(len(h) != 32 for h in path):
        raise ValueError(f"events[{i}]: path must be at most {MAX_PATH_HASHES} 32-byte hashes")
    return seq, index, size, body, path


def check_events(bundle: Mapping[str, Any]) -> tuple[str, int | None, str] | None:
    """None if every event verifies, else ``(reason, seq, message)``."""
    events = bundle.get("events")
    if events is None:
        return None
    if not isinstance(events, list):
        return ("malformed", None, "events: expected a list")
    roots = _batch_roots(bundle.get("entries") or [])
    for i, item in enumerate(events):
        try:
            seq, index, size, body, path = _decoded(item, i)
        except ValueError as exc:
            return ("malformed", None, str(exc))
        if seq not in roots:
            return (
                "lineage_event",
                seq,
                f"events[{i}]: seq {seq} is not a lineage.ingest intent of this bundle",
            )
        signed_size, root = roots[seq]
        if size != signed_size:
            return (
                "lineage_event",
                seq,
                f"events[{i}]: batch size {size} differs from the signed size {signed_size}",
            )
        if not v.verify_inclusion(index, size, v.leaf_hash(body), path, root):
            return (
                "lineage_event",
                seq,
                f"events[{i}]: event is not leaf {index} of the attested batch",
            )
    return None
