"""``lineage-audit incident ...``: the model risk officer's queue from a shell.

``list`` and ``show`` read the incident store only. ``ack``, ``resolve``, ``halt`` and
``lift`` are write-ahead ledger actions like their gRPC and HTTP twins, so they need the
ledger (``--ledger/--keys``) and the policy; the actor is ``--actor`` (the CLI has no
authentication: whoever holds the ledger keys speaks for that actor, and the policy still
decides whether that actor may). ``report`` signs a checkpoint and writes the HTML report,
optionally the PDF and the JSON artifact. Out-of-order changes and refusals exit 2 with the
message; out of order writes nothing.

With ``--server HOST:PORT`` instead of the local files, ``list``, ``show``, ``ack``,
``resolve``, ``halt``, ``lift`` and ``report`` go through a running server's
``IncidentService`` (the officer need not be on the server's machine); the actor is then the
caller's identity, not ``--actor``. ``submit-attribution`` and ``submit-ratings`` only talk
to a server. A server is authenticated like any client: a bearer token read from
``--token-file`` or the ``LINEAGE_AUDIT_TOKEN`` environment variable (never a flag: command
lines are visible to other users), TLS with ``--ca`` and mTLS with ``--cert/--key``.
"""

from __future__ import annotations

import argparse
import json
import os
from contextlib import ExitStack
from pathlib import Path

from ..ledger import Ledger
from .errors import IncidentError
from .incident import STATES, Incident
from .manager import IncidentManager
from .policy import load_policy
from .store import IncidentStore

__all__ = ["TOKEN_ENV", "register"]

TOKEN_ENV = "LINEAGE_AUDIT_TOKEN"


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
        change.add_argument("--policy", type=Path, help="incident policy TOML (local files)")
        change.add_argument("--actor", help="who, as the policy names actors (local files)")
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

    hooks = (("halt", "fire", "fire the halt hook of an asset class"),
             ("lift", "lift", "lift the halt of an asset class (rely again)"))  # fmt: skip
    for name, action, what in hooks:
        hook = commands.add_parser(name, help=what)
        _store_arg(hook)
        _ledger_args(hook)
        hook.add_argument("asset_class")
        hook.add_argument("--policy", type=Path, help="incident policy TOML (local files)")
        hook.add_argument("--actor", help="who, as the policy names actors (local files)")
        hook.add_argument("--reason", required=True, help="why (recorded and sent, signed)")
        hook.add_argument("--incident", help="the incident it answers")
        hook.set_defaults(func=_halt, action=action)

    attribution = commands.add_parser(
        "submit-attribution", help="hand a finished attribution job to a server (Tier 4)"
    )
    _server_args(attribution)
    attribution.add_argument("--asset-class", required=True, help="the policy's asset class")
    attribution.add_argument("job_dir", type=Path, help="the job's --out directory")
    attribution.set_defaults(func=_submit_attribution)

    ratings = commands.add_parser(
        "submit-ratings", help="hand Tier 1 ratings (provenance check --json) to a server"
    )
    _server_args(ratings)
    ratings.add_argument("files", type=Path, nargs="+", help="JSON: one rating or a list")
    ratings.set_defaults(func=_submit_ratings)


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, help="incident store (SQLite; local files)")
    _server_args(parser, required=False)


def _ledger_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ledger", type=Path, help="ledger database (local files)")
    parser.add_argument("--keys", type=Path, help="ledger key directory (local files)")


def _need(args: argparse.Namespace, *names: str) -> None:
    """Working on local files (no --server): these options are required."""
    missing = [f"--{n}" for n in names if getattr(args, n, None) in (None, "")]
    if missing:
        raise IncidentError("arguments", f"{', '.join(missing)} required without --server")


def _server_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    group = parser.add_argument_group("server")
    help_text = "gRPC address" if required else "a running server's gRPC address (instead of --db)"
    group.add_argument("--server", required=required, metavar="HOST:PORT", help=help_text)
    group.add_argument(
        "--token-file", type=Path, help=f"file holding the bearer token (default: ${TOKEN_ENV})"
    )
    group.add_argument("--ca", type=Path, help="CA certificate (PEM): use TLS")
    group.add_argument("--cert", type=Path, help="client certificate (PEM): mTLS")
    group.add_argument("--key", type=Path, help="client key (PEM) of --cert")


def _client(args: argparse.Namespace, stack: ExitStack):
    from ..client import Client

    if args.token_file is not None:
        token = args.token_file.read_text(encoding="utf-8").strip()
    else:
        token = os.environ.get(TOKEN_ENV) or None
    return stack.enter_context(Client(args.server, token=token, ca=args.ca, cert=args.cert,
                                      key=args.key))  # fmt: skip


def _store(args: argparse.Namespace, stack: ExitStack) -> IncidentStore:
    _need(args, "db")
    if not args.db.exists():  # never create an empty store by mistyping its path
        raise FileNotFoundError(2, "incident store not found", str(args.db))
    store = IncidentStore(args.db)
    stack.callback(store.close)
    return store


def _manager(args: argparse.Namespace, stack: ExitStack) -> IncidentManager:
    _need(args, "db", "ledger", "keys", "policy", "actor")
    store = _store(args, stack)
    policy = load_policy(args.policy)
    return IncidentManager(stack.enter_context(Ledger.open(args.ledger, args.keys)), store, policy)


def _line(incident: Incident | dict) -> str:
    s = incident.summary() if isinstance(incident, Incident) else incident
    halted = " HALTED" if s["halted"] else ""
    return (f"{s['id']}  {s['state']:<12}  {s['asset_class']}  confidence "
            f"{s['confidence']:.4f} ({s['band']})  opened {s['opened_at']}  "
            f"{', '.join(s['triggers'])}{halted}")  # fmt: skip


def _summary_of(message) -> dict:
    """An ``incidents_pb2.Incident`` as :meth:`Incident.summary` shapes it."""
    names = ("id", "asset_class", "signal", "state", "opened_at", "updated_at", "confidence",
             "band", "halted")  # fmt: skip
    return {**{n: getattr(message, n) for n in names}, "triggers": list(message.triggers)}


def _remote(args: argparse.Namespace, call):
    """``call(client)`` against ``--server`` (a refusal reaches the CLI's main as
    ``error: CODE: message``, exit 2)."""
    with ExitStack() as stack:
        return call(_client(args, stack))


def _list(args: argparse.Namespace) -> int:
    if args.server:
        listed = _remote(args, lambda c: c.list_incidents(args.state or "", args.asset_class or ""))
        found = [_summary_of(m) for m in listed]
    else:
        with ExitStack() as stack:
            local = _store(args, stack).list(state=args.state, asset_class=args.asset_class)
        found = [i.summary() for i in local]
    for summary in found:
        print(json.dumps(summary, sort_keys=True) if args.json else _line(summary))
    if not found and not args.json:
        print("no incidents")
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.server:
        incident = Incident.from_json(_remote(args, lambda c: c.get_incident(args.id)))
    else:
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
    if args.server:

        def remote(client):
            verb = client.acknowledge_incident if args.verb == "acknowledge" else \
                client.resolve_incident  # fmt: skip
            verb(args.id, note=args.note)
            return Incident.from_json(client.get_incident(args.id))

        incident = _remote(args, remote)
    else:
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

    if args.server:
        artifact = _remote(args, lambda c: c.incident_artifact(args.id))
    else:
        _need(args, "ledger", "keys")
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

    if args.server:

        def remote(client):
            act = client.fire_halt if args.action == "fire" else client.lift_halt
            return act(args.asset_class, args.reason, args.incident or "")

        result = _remote(args, remote)
    else:
        with ExitStack() as stack:
            hook = HaltHook(_manager(args, stack))
            act = hook.fire if args.action == "fire" else hook.lift
            result = act(args.asset_class, actor=args.actor, reason=args.reason,
                         incident_id=args.incident)  # fmt: skip
    delivery = "delivered" if result.delivered else f"NOT delivered ({result.webhook_error})"
    state = "suspended" if args.action == "fire" else "relied on again"
    print(f"{result.action} {result.asset_class}: signal {result.signal} {state}; webhook "
          f"{delivery}; ledger seq {result.intent_seq}")  # fmt: skip
    return 0


def _submit_attribution(args: argparse.Namespace) -> int:
    for name in ("summary.json", "results.parquet"):
        if not (args.job_dir / name).is_file():
            raise FileNotFoundError(2, f"no {name}: not a finished attribution job",
                                    str(args.job_dir))  # fmt: skip
    reply = _remote(args, lambda c: c.submit_attribution(args.asset_class, args.job_dir))
    kept = "stored" if reply.stored else "already stored"
    print(f"{reply.job}: {kept} for {args.asset_class} ({reply.rows} rows, "
          f"{reply.discoveries} discoveries); ledger seq {reply.intent_seq}")  # fmt: skip
    if reply.HasField("incident"):
        i = reply.incident
        print(f"incident {i.id} ({i.state}): confidence {i.confidence:.4f} ({i.band})")
    return 0


def _submit_ratings(args: argparse.Namespace) -> int:
    items = []
    for path in args.files:
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise IncidentError(str(path), f"not valid JSON ({exc})") from None
        items += loaded if isinstance(loaded, list) else [loaded]
    reply = _remote(args, lambda c: c.submit_ratings(items))
    print(f"ratings of {', '.join(reply.sources)} stored ({reply.held} sources held); "
          f"ledger seq {reply.intent_seq}")  # fmt: skip
    return 0
