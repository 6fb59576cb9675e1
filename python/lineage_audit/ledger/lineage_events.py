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

__all__ = ["BATCH_SUBJECT", "check_events", "parse_events"]

BATCH_SUBJECT = "openlineage-batch:"
MAX_PATH_HASHES = 64


def _batch_roots(entries: Sequence[Mapping[str, Any]]) -> dict[int, tuple[int, bytes]]:
    roots = {}
    for entry in entries:
        try:
            statement = json.loads(base64.b64decode(entry["envelope"]["payload"]))
        except (KeyError, TypeError, ValueError, binascii.Error):
            continue
        subjects = statement.get("subject") if isinstance(statement, dict) else None
        for subject in subjects if isinstance(subjects, list) else []:
            name = subject.get("name", "") if isinstance(subject, dict) else ""
            if not isinstance(name, str) or not name.startswith(BATCH_SUBJECT):
                continue
            try:
                size = int(name.removeprefix(BATCH_SUBJECT))
                roots[int(entry["seq"])] = (size, bytes.fromhex(subject["digest"]["sha256"]))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
    return roots


def _integer(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{field}: expected a non-negative integer")
    return value


def _item(item: Any, i: int) -> tuple[int, int, int, bytes, list[bytes]]:
    where = f"events[{i}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    try:
        seq, index, size = (_integer(item.get(k), f"{where}.{k}")
                            for k in ("record_seq", "index", "size"))  # fmt: skip
        if not isinstance(item.get("event"), str) or not isinstance(item.get("path"), list):
            raise ValueError(f"{where}: event must be a base64 string and path a list")
        body = base64.b64decode(item["event"], validate=True)
        path = [base64.b64decode(h, validate=True) for h in item["path"]]
    except (TypeError, binascii.Error) as exc:
        raise ValueError(f"{where}: not base64 ({exc})") from None
    if len(path) > MAX_PATH_HASHES or any(len(h) != 32 for h in path):
        raise ValueError(f"{where}.path: at most {MAX_PATH_HASHES} hashes of 32 bytes")
    return seq, index, size, body, path


def parse_events(bundle: Mapping[str, Any]) -> list[tuple[int, int, int, bytes, list[bytes]]]:
    """Step 0 for ``events``: the shape of every item (ValueError names the item)."""
    events = bundle.get("events")
    if events is None:
        return []
    if not isinstance(events, list):
        raise ValueError("events: expected a list")
    return [_item(item, i) for i, item in enumerate(events)]


def check_events(events, entries) -> tuple[str, int | None, str] | None:
    """Step 8: None if every parsed event verifies, else ``(reason, seq, message)``."""
    roots = _batch_roots(entries)
    for i, (seq, index, size, body, path) in enumerate(events):
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
