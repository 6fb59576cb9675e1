"""``lineage-audit incident ...``: the model risk officer's queue from a shell.

``list`` and ``show`` read the incident store only. ``ack``, ``resolve`` and ``halt`` are
write-ahead ledger actions like their gRPC and HTTP twins, so they need the ledger
(``--ledger/--keys``) and the policy; the actor is ``--actor`` (the CLI has no
authentication: whoever holds the ledger keys speaks for that actor, and the policy still
decides whether that actor may). ``report`` signs a checkpoint and writes the HTML report,
optionally the PDF and the JSON artifact. Out-of-order changes and refusals exit 2 with the
message; out of order writes nothing.
"""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from pathlib import Path

from ..ledger import Ledger
from .incident import STATES, Incident
from .manager import IncidentManager
from .policy import load_policy
from .store import IncidentStore

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "incident", help="Tier 5: the incident queue, audit reports and the halt hook"
    )
    commands = parser.add_subparsers(dest="incident_command", required=True)

    listing = commands.add_parser("list", help="incidents, oldest first")
    _store_arg(listing)
    listing.add_argument("--state", choices=STATES, help="only incidents in this state")
    listing.add_argument("--asset-class", help="only incidents of this asset class")
    listing.add_argument("--json", action="store_true", help="one JSON summary per line")
    listing.set_defaults(func=_list)

    show = commands.add_parser("show", help="one incident: triggers, confidence, history")
    _store_arg(show)
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="the whole incident as JSON")
    show.set_defaults(func=_show)

    for name, verb in (("ack", "acknowledge"), ("resolve", "resolve")):
        change = commands.add_parser(name, help=f"{verb} an incident (a ledger action)")
        _store_arg(change)
        _ledger_args(change)
        change.add_argument("id")
        change.add_argument("--policy", type=Path, required=True, help="incident policy TOML")
        change.add_argument("--actor", required=True, help="who (as the policy names actors)")
        change.add_argument("--note", default="", help="why (recorded)")
        change.set_defaults(func=_change, verb=verb)

    report = commands.add_parser("report", help="the audit report (HTML, optional PDF/JSON)")
    _store_arg(report)
    _ledger_args(report)
    report.add_argument("id")
    report.add_argument("-o", "--out", type=Path, required=True, help="HTML file to write")
    report.add_argument("--pdf", type=Path, help="also print it to this PDF (chromium)")
    report.add_argument("--json", type=Path, help="also write the JSON artifact here")
    report.set_defaults(func=_report)

    halt = commands.add_parser("halt", help="fire the halt hook of an asset class")
    _store_arg(halt)
    _ledger_args(halt)
    halt.add_argument("asset_class")
    halt.add_argument("--policy", type=Path, required=True, help="incident policy TOML")
    halt.add_argument("--actor", required=True, help="who (as the policy names actors)")
    halt.add_argument("--reason", required=True, help="why (recorded and sent, signed)")
    halt.add_argument("--incident", help="the incident it answers")
    halt.set_defaults(func=_halt)


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, required=True, help="incident store (SQLite)")


def _ledger_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ledger", type=Path, required=True, help="ledger database")
    parser.add_argument("--keys", type=Path, required=True, help="ledger key directory")


def _store(args: argparse.Namespace, stack: ExitStack) -> IncidentStore:
    if not args.db.exists():  # never create an empty store by mistyping its path
        raise FileNotFoundError(2, "incident store not found", str(args.db))
    store = IncidentStore(args.db)
    stack.callback(store.close)
    return store


def _manager(args: argparse.Namespace, stack: ExitStack) -> IncidentManager:
    store = _store(args, stack)
    policy = load_policy(args.policy)
    return IncidentManager(stack.enter_context(Ledger.open(args.ledger, args.keys)), store, policy)


def _line(incident: Incident) -> str:
    s = incident.summary()
    halted = " HALTED" if s["halted"] else ""
    return (f"{s['id']}  {s['state']:<12}  {s['asset_class']}  confidence "
            f"{s['confidence']:.4f} ({s['band']})  opened {s['opened_at']}  "
            f"{', '.join(s['triggers'])}{halted}")  # fmt: skip


def _list(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        found = _store(args, stack).list(state=args.state, asset_class=args.asset_class)
    for incident in found:
        print(json.dumps(incident.summary(), sort_keys=True) if args.json else _line(incident))
    if not found and not args.json:
        print("no incidents")
    return 0


def _show(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        incident = _store(args, stack).get(args.id)
    if args.json:
        print(json.dumps(incident.to_json(), indent=1, sort_keys=True))
        return 0
    print(_line(incident))
    for step in incident.confidence.steps:
        print(f"  confidence step {step.name}: {step.value}")
    for change in incident.history:
        print(f"  {change['at']}  {change['from']} -> {change['to']} by {change['actor']}"
              f"{': ' + change['note'] if change.get('note') else ''}")  # fmt: skip
    for halt in incident.halts:
        print(f"  {halt['at']}  {halt['action']} by {halt['actor']} "
              f"(webhook delivered: {halt['delivered']})")  # fmt: skip
    return 0


def _change(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        manager = _manager(args, stack)
        change = manager.acknowledge if args.verb == "acknowledge" else manager.resolve
        incident = change(args.id, actor=args.actor, note=args.note)
    last = incident.history[-1]
    print(f"{incident.id}: {last['from']} -> {last['to']} by {last['actor']} "
          f"(ledger seq {last['intent_seq']})")  # fmt: skip
    return 0


def _report(args: argparse.Namespace) -> int:
    from .artifact import build_artifact, validate_artifact
    from .report import render_html, render_pdf

    with ExitStack() as stack:
        store = _store(args, stack)
        ledger = stack.enter_context(Ledger.open(args.ledger, args.keys))
        artifact = build_artifact(store.get(args.id), ledger)
    validate_artifact(artifact)
    args.out.write_text(render_html(artifact), encoding="utf-8")
    print(f"{args.out}: report of {args.id} ({len(artifact['ledger']['seqs'])} ledger entries)")
    if args.json is not None:
        args.json.write_text(json.dumps(artifact, indent=1, sort_keys=True), encoding="utf-8")
        print(f"{args.json}: artifact")
    if args.pdf is not None:
        print(f"{render_pdf(args.out, args.pdf)}: PDF")
    return 0


def _halt(args: argparse.Namespace) -> int:
    from .halt import HaltHook

    with ExitStack() as stack:
        result = HaltHook(_manager(args, stack)).fire(
            args.asset_class, actor=args.actor, reason=args.reason, incident_id=args.incident
        )
    delivery = "delivered" if result.delivered else f"NOT delivered ({result.webhook_error})"
    print(f"halt.fire {result.asset_class}: signal {result.signal} suspended; webhook "
          f"{delivery}; ledger seq {result.intent_seq}")  # fmt: skip
    return 0
