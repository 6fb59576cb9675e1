"""Command-line interface of the ledger: ``keys``, ``ledger`` and ``verify`` commands.

Registered on the top-level ``lineage-audit`` parser by :func:`register`. Handlers return the
exit code; errors derived from :class:`~.errors.LedgerError` are turned into ``error: ...``
and exit 2 by the top-level ``main``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import FormatError, LedgerError
from .keys import generate_keys, load_keyring
from .ledger import Ledger
from .records import KINDS, Subject

__all__ = ["DEFAULT_DB", "DEFAULT_KEYS", "register"]

DEFAULT_DB = "./lineage-audit.db"
DEFAULT_KEYS = "./keys"


def _write_output(text: str, output: str | None) -> None:
    if output is None or output == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    Path(output).write_text(text, encoding="utf-8")


# --- keys ---------------------------------------------------------------------------------


def _keys_generate(args: argparse.Namespace) -> int:
    keyring = generate_keys(args.dir, args.name, force=args.force)
    public = keyring.public_keys()
    print(f"wrote keys for {keyring.name!r} to {args.dir}")
    print(f"  record keys: {public.record_ecdsa_key_id}, {public.record_mldsa_key_id}")
    return 0


def _keys_export(args: argparse.Namespace) -> int:
    public = load_keyring(args.dir).public_keys()
    _write_output(json.dumps(public.to_json(), indent=2) + "\n", args.output)
    return 0


# --- ledger -------------------------------------------------------------------------------


def _open(args: argparse.Namespace, *, keys: bool = False, read_only: bool = True) -> Ledger:
    if read_only and not Path(args.db).exists():
        raise LedgerError(f"{args.db}: ledger database not found")
    return Ledger.open(args.db, args.keys if keys else None, read_only=read_only)


def _parse_field(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise FormatError("--field", "expected KEY=VALUE", text)
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _ledger_append(args: argparse.Namespace) -> int:
    subjects = [Subject.parse(item) for item in args.subject or []]
    fields = dict(_parse_field(item) for item in args.field or [])
    with _open(args, keys=True, read_only=False) as ledger:
        entry = ledger.append(args.kind, args.action, args.actor, subjects, fields)
    print(json.dumps({"seq": entry.seq, "leaf_hash": entry.leaf_hash_hex}))
    return 0


def _ledger_checkpoint(args: argparse.Namespace) -> int:
    with _open(args, keys=True, read_only=False) as ledger:
        checkpoint = ledger.checkpoint()
    sys.stdout.write(checkpoint.note)
    return 0


def _ledger_verify(args: argparse.Namespace) -> int:
    from .verify_db import verify_ledger

    report = verify_ledger(args.db, args.pubkeys, engine=args.engine)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(report.line())
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return report.exit_code


def _ledger_prove(args: argparse.Namespace) -> int:
    with _open(args) as ledger:
        if args.consistency is not None:
            old, new = args.consistency
            text = ledger.consistency_text(old, new)
        else:
            text = ledger.tlog_proof(args.seq, args.size)
    _write_output(text, args.output)
    return 0


def _ledger_export_bundle(args: argparse.Namespace) -> int:
    with _open(args) as ledger:
        bundle = ledger.evidence_bundle(args.seq, args.checkpoint, args.since, args.kind)
    _write_output(json.dumps(bundle, indent=2) + "\n", args.output)
    return 0


def _ledger_export_tiles(args: argparse.Namespace) -> int:
    with _open(args) as ledger:
        result = ledger.export_tiles(args.output, args.checkpoint)
    print(f"exported tree size {result.size}: {len(result.files)} files under {args.output}")
    return 0


# --- verify -------------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    from .verify import verify_bundle_file

    verdict = verify_bundle_file(args.file, args.pubkeys)
    if args.json:
        print(json.dumps(verdict.to_json()))
    elif verdict.exit_code == 2:  # unusable input, reported like every other CLI error
        print(f"error: malformed seq=-: {verdict.message}", file=sys.stderr)
    else:
        print(verdict.line())
        if verdict.valid and not verdict.keys_pinned:
            print(
                "warning: keys not pinned; the bundle vouches for itself. "
                "Pass --pubkeys with keys obtained out of band.",
                file=sys.stderr,
            )
    return verdict.exit_code


# --- registration -------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", default=DEFAULT_DB, metavar="PATH", help=f"ledger database (default: {DEFAULT_DB})"
    )


def _keys_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys",
        default=DEFAULT_KEYS,
        metavar="DIR",
        help=f"key directory (default: {DEFAULT_KEYS})",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keys``, ``ledger`` and ``verify`` commands."""
    keys = subparsers.add_parser("keys", help="generate and export ledger keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    gen = keys_sub.add_parser(
        "generate",
        help="generate record and checkpoint key pairs (ECDSA P-256 + ML-DSA-65)",
        description="Write PKCS#8 PEM key files (mode 0600) and checkpoint-name.txt.",
    )
    gen.add_argument(
        "--dir",
        default=DEFAULT_KEYS,
        metavar="DIR",
        help=f"key directory (default: {DEFAULT_KEYS})",
    )
    gen.add_argument(
        "--name",
        help="checkpoint key name = log origin (default: lineage-audit.local/<random hex>)",
    )
    gen.add_argument("--force", action="store_true", help="overwrite existing key files")
    gen.set_defaults(func=_keys_generate)
    export = keys_sub.add_parser("export", help="write the public-keys JSON")
    export.add_argument(
        "--dir",
        default=DEFAULT_KEYS,
        metavar="DIR",
        help=f"key directory (default: {DEFAULT_KEYS})",
    )
    export.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    export.set_defaults(func=_keys_export)

    ledger = subparsers.add_parser(
        "ledger", help="append to, checkpoint, prove and verify a ledger"
    )
    sub = ledger.add_subparsers(dest="ledger_command", required=True, metavar="COMMAND")

    append = sub.add_parser("append", help="sign and append one record")
    _db(append)
    _keys_dir(append)
    append.add_argument(
        "--kind", default="record", choices=KINDS, help="record kind (default: record)"
    )
    append.add_argument("--action", required=True, help="action name, e.g. baseline.fit")
    append.add_argument("--actor", required=True, help="authenticated identity that asked")
    append.add_argument(
        "--subject", action="append", metavar="NAME=SHA256HEX", help="subject digest (repeatable)"
    )
    append.add_argument(
        "--field", action="append", metavar="KEY=VALUE", help="predicate field; JSON or string"
    )
    append.set_defaults(func=_ledger_append)

    verify = sub.add_parser(
        "verify",
        help="audit the whole database",
        description="Exit 0 valid; 1 tampered (prints the first bad seq and why); "
        "2 unusable input.",
    )
    _db(verify)
    verify.add_argument("--pubkeys", required=True, metavar="FILE", help="trusted public-keys JSON")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument(
        "--engine",
        choices=("auto", "rust", "python"),
        default="auto",
        help="who verifies the signatures: the Rust extension in parallel, the independent "
        "pure-Python verifier, or auto (Rust when built; default)",
    )
    verify.set_defaults(func=_ledger_verify)

    checkpoint = sub.add_parser("checkpoint", help="sign a checkpoint of the current tree")
    _db(checkpoint)
    _keys_dir(checkpoint)
    checkpoint.set_defaults(func=_ledger_checkpoint)

    prove = sub.add_parser(
        "prove", help="inclusion proof (.tlog-proof) or consistency proof (text)"
    )
    _db(prove)
    which = prove.add_mutually_exclusive_group(required=True)
    which.add_argument("--seq", type=_positive, metavar="N", help="entry to prove")
    which.add_argument(
        "--consistency", nargs=2, type=_positive, metavar=("OLD", "NEW"), help="tree sizes"
    )
    prove.add_argument(
        "--size", type=_positive, metavar="N", help="stored checkpoint size (default: latest)"
    )
    prove.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    prove.set_defaults(func=_ledger_prove)

    bundle = sub.add_parser("export-bundle", help="write an evidence bundle (JSON)")
    _db(bundle)
    bundle.add_argument(
        "--seq",
        type=_positive,
        action="append",
        required=True,
        metavar="N",
        help="entry (repeatable)",
    )
    bundle.add_argument(
        "--checkpoint", type=_positive, metavar="SIZE", help="stored checkpoint (default: latest)"
    )
    bundle.add_argument(
        "--since",
        type=_positive,
        metavar="SIZE",
        help="older stored checkpoint to prove consistency from",
    )
    bundle.add_argument("--kind", default="evidence", choices=("evidence", "lineage-path"))
    bundle.add_argument("-o", "--output", required=True, metavar="FILE", help="output file")
    bundle.set_defaults(func=_ledger_export_bundle)

    tiles = sub.add_parser("export-tiles", help="write the c2sp.org/tlog-tiles layout")
    _db(tiles)
    tiles.add_argument(
        "--checkpoint", type=_positive, metavar="SIZE", help="stored checkpoint (default: latest)"
    )
    tiles.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    tiles.set_defaults(func=_ledger_export_tiles)

    check = subparsers.add_parser(
        "verify",
        help="verify an evidence bundle or .tlog-proof offline",
        description="Exit 0 valid; 1 invalid (INVALID <reason> seq=<n>: <message>); 2 unusable.",
    )
    check.add_argument("file", metavar="FILE", help="evidence bundle JSON or .tlog-proof")
    check.add_argument(
        "--pubkeys", metavar="FILE", help="trusted public-keys JSON (pins the keys; recommended)"
    )
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check.set_defaults(func=_verify)
