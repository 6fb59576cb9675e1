"""CLI of Tier 1: ``lineage-audit provenance check``."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import ProvenanceError, ProvenanceInputError
from .model import SourceRating
from .rating import rate_source

__all__ = ["register"]


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    provenance = subparsers.add_parser("provenance", help="Tier 1 provenance checks at ingest")
    sub = provenance.add_subparsers(dest="provenance_command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="rate one source from its AIBOM, C2PA assets and OpenLineage presence",
        description="Validate the source's AIBOM (CycloneDX 1.6/1.7 JSON), read the C2PA "
        "manifest of each asset offline against the pinned trust anchors, and rate the "
        "source trusted / valid / unverifiable / opaque / invalid. Exit 0 when rated, 1 when "
        "the rating is invalid (a tamper finding), 2 on error.",
    )
    check.add_argument("--source", required=True, help="source id (dataset or vendor)")
    check.add_argument("--aibom", type=Path, help="the source's CycloneDX JSON ML-BOM")
    check.add_argument(
        "--c2pa", type=Path, nargs="+", action="extend", default=[], metavar="FILE",
        help="assets to read for C2PA manifests (repeatable)",
    )  # fmt: skip
    check.add_argument("--trust-anchors", type=Path, metavar="PEM", help="pinned C2PA anchors")
    check.add_argument(
        "--c2pa-settings", type=Path, metavar="JSON",
        help="c2pa settings file (e.g. trust anchors and trust_config); cannot enable network",
    )  # fmt: skip
    check.add_argument(
        "--openlineage-events", type=_count, default=0, metavar="N",
        help="OpenLineage events recorded for the source (default: 0)",
    )  # fmt: skip
    check.add_argument("--json", action="store_true", help="print the rating as JSON")
    group = check.add_argument_group("audit ledger (optional: record the check)")
    group.add_argument("--db", help="ledger database")
    group.add_argument("--keys", help="key directory")
    group.add_argument("--actor", help="identity recorded with the action (default: cli:<user>)")
    check.set_defaults(func=_check)


def _rate(args: argparse.Namespace) -> SourceRating:
    return rate_source(
        args.source,
        aibom=args.aibom,
        c2pa_assets=args.c2pa,
        trust_anchors=args.trust_anchors,
        openlineage_events=args.openlineage_events,
        c2pa_settings=args.c2pa_settings,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _recorded(args: argparse.Namespace) -> tuple[SourceRating, dict[str, Any]]:
    """Run the check as a write-ahead ledger action ``provenance.check``: the intent (with
    every input file's SHA-256 as a subject) is durable before any check runs; the outcome
    carries the rating (or the error)."""
    from ..ledger import Ledger

    subject = []
    if args.aibom is not None:
        subject.append((f"aibom:{args.aibom}", _sha256(args.aibom)))
    subject += [(f"c2pa:{asset}", _sha256(asset)) for asset in args.c2pa]
    actor = args.actor or f"cli:{getpass.getuser()}"
    with (
        Ledger.open(args.db, args.keys) as ledger,
        ledger.action(
            "provenance.check",
            actor=actor,
            subject=subject,
            source=args.source,
            openlineage_events=args.openlineage_events,
        ) as act,
    ):
        rating = _rate(args)
        read = [c.details.get("sha256") for c in rating.checks if c.details.get("sha256")]
        if read != [digest for _, digest in subject]:
            raise ProvenanceError("an input file changed while it was being checked")
        act.result = rating.to_json()
    return rating, {"intent_seq": act.intent.seq, "outcome_seq": act.outcome.seq}


def _check(args: argparse.Namespace) -> int:
    if (args.db is None) != (args.keys is None):
        missing = "--keys" if args.keys is None else "--db"
        raise ProvenanceInputError(missing, "--db and --keys go together to record the check")
    if args.db is not None:
        rating, ledger = _recorded(args)
    else:
        rating, ledger = _rate(args), None
    if args.json:
        document = rating.to_json()
        if ledger is not None:
            document["ledger"] = ledger
        print(json.dumps(document, indent=2))
    else:
        _print(rating, ledger)
    return 1 if rating.finding else 0


def _print(rating: SourceRating, ledger: dict[str, Any] | None) -> None:
    finding = "  FINDING" if rating.finding else ""
    print(f"source {rating.source}: {rating.rating} (confidence {rating.confidence:.2f}){finding}")
    for reason in rating.reasons:
        print(f"  - {reason}")
    print("checks:")
    for check in rating.checks:
        against = f"{check.schema}; " if check.schema else ""
        print(f"  {check.label}: {check.state}  [{against}{check.tool}]")
        for reason in check.reasons:
            print(f"      {reason}")
    if ledger is not None:
        print(
            f"recorded in the ledger: provenance.check intent seq {ledger['intent_seq']}, "
            f"outcome seq {ledger['outcome_seq']}"
        )
