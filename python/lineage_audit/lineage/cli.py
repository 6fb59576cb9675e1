"""``lineage-audit lineage ...``: ingest event files, findings, path proofs, the picture."""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from ..ledger import Ledger
from .events import EventError
from .findings import convergence, propagate_confidence, re_entries
from .proofs import path_proof_bytes, verify_path_proof
from .service import LineageService, events_from_file

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lineage", help="Tier 2: OpenLineage events, the lineage graph and its findings"
    )
    commands = parser.add_subparsers(dest="lineage_command", required=True)

    ingest = commands.add_parser(
        "ingest", help="ingest event files (what the OpenLineage client's file transport writes)"
    )
    ingest.add_argument("files", nargs="+", type=Path, help="JSONL, one event, or a JSON array")
    _store_args(ingest)
    ingest.add_argument("--actor", default="lineage-audit-cli", help="ledger actor")
    ingest.set_defaults(func=_ingest)

    findings = commands.add_parser("findings", help="convergence and re-entry findings")
    _store_args(findings)
    findings.add_argument("-k", type=int, default=3, help="convergence threshold (default 3)")
    findings.add_argument("--json", action="store_true", help="one JSON object per finding")
    findings.set_defaults(func=_findings)

    prove = commands.add_parser("prove", help="a lineage path proof of one dataset's ancestry")
    _store_args(prove, ledger_required=True)
    prove.add_argument("--node", required=True, help="dataset:<namespace>:<name>")
    prove.add_argument("-o", "--out", type=Path, required=True, help="bundle file to write")
    prove.set_defaults(func=_prove)

    verify = commands.add_parser("verify", help="verify a lineage path proof (pure Python)")
    verify.add_argument("bundle", type=Path)
    verify.add_argument("--pubkeys", type=Path, help="pinned public keys (keys.pub.json)")
    verify.set_defaults(func=_verify)

    show = commands.add_parser("show", help="draw the graph as SVG, findings highlighted")
    _store_args(show)
    show.add_argument("-o", "--out", type=Path, required=True, help="SVG file to write")
    show.add_argument("-k", type=int, default=3, help="convergence threshold (default 3)")
    show.add_argument(
        "--ratings", type=Path, help='JSON {"namespace:name": confidence} of Tier 1 ratings'
    )
    show.set_defaults(func=_show)


def _store_args(parser: argparse.ArgumentParser, *, ledger_required: bool = False) -> None:
    parser.add_argument("--db", type=Path, required=True, help="lineage event store (SQLite)")
    parser.add_argument("--ledger", type=Path, required=ledger_required, help="ledger database")
    parser.add_argument("--keys", type=Path, required=ledger_required, help="ledger key dir")


def _open(args: argparse.Namespace, stack: ExitStack) -> LineageService:
    if (args.ledger is None) != (args.keys is None):
        raise EventError("--ledger/--keys", "give both or neither")
    ledger = None
    if args.ledger is not None:
        ledger = stack.enter_context(Ledger.open(args.ledger, args.keys))
    pool = stack.enter_context(ThreadPoolExecutor(1))
    service = LineageService.open(args.db, ledger, pool, actor=getattr(args, "actor", "cli"))
    stack.callback(service.store.close)
    return service


def _ingest(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        service = _open(args, stack)
        for path in args.files:
            events = events_from_file(path)
            try:
                result = service.ingest_now(events, args.actor)
            except EventError as exc:
                raise EventError(f"{path}: {exc.field}", exc.problem, exc.value) from None
            where = "" if result.record_seq is None else f"; ledger seq {result.record_seq}"
            print(f"{path}: {result.accepted} events ({result.stored} new, "
                  f"{result.duplicates} already stored){where}")  # fmt: skip
    return 0


def _findings(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        graph = _open(args, stack).graph
        found = [c.to_json() for c in convergence(graph, args.k)]
        found += [r.to_json() for r in re_entries(graph)]
    for item in found:
        if args.json:
            print(json.dumps(item))
        elif item["finding"] == "convergence":
            print(f"convergence: {len(item['sources'])} sources of {item['asset']} share "
                  f"{item['upstream']}: {', '.join(item['sources'])}")  # fmt: skip
        else:
            print(f"re-entry: output of model {item['model']} reaches its training input: "
                  + " -> ".join(item["path"]))  # fmt: skip
    if not found and not args.json:
        print("no findings")
    return 0


def _prove(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        bundle = _open(args, stack).path_proof(args.node)
    args.out.write_bytes(path_proof_bytes(bundle))
    print(f"{args.out}: {len(bundle['events'])} ancestry events, "
          f"{len(bundle['entries'])} ledger entries")  # fmt: skip
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..ledger.keys import load_public_keys

    bundle = json.loads(args.bundle.read_bytes())
    keys = load_public_keys(args.pubkeys) if args.pubkeys else None
    verdict = verify_path_proof(bundle, keys)
    print(verdict.line())
    for source, target in verdict.edges:
        print(f"  {source} -> {target}")
    return 0 if verdict.valid else 1


def _show(args: argparse.Namespace) -> int:
    from .picture import render_svg

    ratings = {}
    if args.ratings is not None:
        raw = json.loads(args.ratings.read_text(encoding="utf-8"))
        ratings = {tuple(k.split(":", 1)): float(v) for k, v in raw.items()}
    with ExitStack() as stack:
        graph = _open(args, stack).graph
        svg = render_svg(
            graph, convergence(graph, args.k), re_entries(graph),
            propagate_confidence(graph, ratings), opaque={k for k, v in ratings.items()
                                                          if v <= 0.3},
        )  # fmt: skip
    args.out.write_text(svg, encoding="utf-8")
    print(f"{args.out}: {len(graph.datasets())} datasets, {len(graph.runs)} runs", file=sys.stderr)
    return 0
