"""CLI of Tier 3: ``lineage-audit baseline fit|show`` and ``lineage-audit score``."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from ..cli_options import default_actor, int_at_least, ledger_options
from ..ledger import Ledger
from .artifact import load_baseline
from .baseline import Baseline, BaselineConfig
from .errors import InputError
from .inputs import load_embeddings
from .jobs import FitJob, ScoreJob, verify_baseline_evidence
from .monitor import WindowPolicy
from .rules import Transition, WatchRule, parse_halt_rule
from .series import WindowResult

__all__ = ["register"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d)$")
_UNIT_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_UNIT_NS["d"] = 24 * _UNIT_NS["h"]


def parse_duration(text: str) -> int:
    """``90s``, ``5m``, ``1h`` ... as nanoseconds."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 30s, 5m or 1h, got {text!r}")
    return int(float(match.group(1)) * _UNIT_NS[match.group(2)])


def _compute_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("compute")
    group.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "numpy", "torch", "cupy", "keops"),
        help="kernel backend (default: auto, by device, dimension and size)",
    )
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")


def _input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="embeddings: .npy, .parquet or .arrow")
    parser.add_argument("--column", help="embedding column of a table (default: embedding)")
    parser.add_argument("--time-column", help="event-time column (default: event_time if any)")
    parser.add_argument("--encoder-id", help="encoder that produced the embeddings")


def register(subparsers: argparse._SubParsersAction) -> None:
    baseline = subparsers.add_parser("baseline", help="fit and inspect Tier 3 baselines")
    sub = baseline.add_subparsers(dest="baseline_command", required=True, metavar="COMMAND")
    _register_fit(sub)
    show = sub.add_parser("show", help="verify a baseline artifact and print its summary")
    show.add_argument("artifact", type=Path, help="baseline directory")
    show.add_argument("--json", action="store_true", help="print the manifest summary as JSON")
    show.add_argument(
        "--pubkeys", type=Path, help="also verify the artifact's ledger evidence against these keys"
    )
    show.set_defaults(func=_show)
    _register_score(subparsers)


def _register_fit(sub: argparse._SubParsersAction) -> None:
    fit = sub.add_parser(
        "fit",
        help="fit a calibrated baseline from time-ordered embeddings",
        description="Split time-ordered embeddings into a reference and a calibration pool, "
        "freeze the bandwidth, draw block-bootstrap null windows, measure ARL0 of the halt "
        "rule, save the artifact and record the fit in the ledger.",
    )
    _input_options(fit)
    fit.add_argument("--out", type=Path, required=True, help="artifact directory to create")
    fit.add_argument(
        "--window-size", type=int_at_least(2), action="append", dest="window_sizes",
        help="rows per window; repeat for several sizes (default: 256)",
    )  # fmt: skip
    fit.add_argument("--block-length", type=int_at_least(1), help="bootstrap block (default n/8)")
    fit.add_argument(
        "--null-windows", type=int_at_least(1000), default=10_000,
        help="null windows per size (default: %(default)s)",
    )  # fmt: skip
    fit.add_argument(
        "--calibration-fraction", type=float, default=0.3,
        help="newest fraction of rows kept for calibration (default: %(default)s)",
    )  # fmt: skip
    fit.add_argument("--targets", type=Path, help="known model-generated embeddings (witness, λ̂)")
    fit.add_argument("--asset-class", default="default", help="asset class (default: default)")
    fit.add_argument(
        "--halt", default="consecutive:3", help="consecutive:N | k-of-l:K/L | cusum:K/H"
    )
    fit.add_argument("--watch-z", type=float, default=2.0, help="watch threshold (default: 2)")
    fit.add_argument("--min-effect", type=float, default=0.0, help="watch minimum effect size")
    fit.add_argument("--stride", type=int_at_least(1), help="window stride rows (default: size)")
    fit.add_argument(
        "--arl-windows", type=int_at_least(0), default=2000,
        help="null windows streamed to measure ARL0 (default: %(default)s)",
    )  # fmt: skip
    fit.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    _compute_options(fit)
    ledger_options(fit)
    fit.set_defaults(func=_fit)


def _register_score(subparsers: argparse._SubParsersAction) -> None:
    score = subparsers.add_parser(
        "score",
        help="score a file of embeddings in windows against a baseline",
        description="Score windows of embeddings against a baseline, print a table, write "
        "the series (Parquet) and record every alert transition in the ledger.",
    )
    _input_options(score)
    score.add_argument("--baseline", type=Path, required=True, help="baseline artifact directory")
    score.add_argument("--asset", default=None, help="asset class (default: the baseline's)")
    score.add_argument("--window-size", type=int_at_least(2), help="rows per count window")
    score.add_argument("--stride", type=int_at_least(1), help="rows between count windows")
    score.add_argument("--window-duration", type=parse_duration, help="time windows, e.g. 5m")
    score.add_argument("--window-stride", type=parse_duration, help="time between windows")
    score.add_argument("--series", type=Path, help="write the series here (Parquet parts)")
    score.add_argument("--json", action="store_true", help="print one JSON object per window")
    _compute_options(score)
    ledger_options(score)
    score.set_defaults(func=_score)


def _open_ledger(args: argparse.Namespace) -> Ledger:
    return Ledger.open(args.db, args.keys)


def _fit(args: argparse.Namespace) -> int:
    config = BaselineConfig(
        window_sizes=tuple(args.window_sizes or (256,)),
        block_length=args.block_length,
        null_windows=args.null_windows,
        calibration_fraction=args.calibration_fraction,
        seed=args.seed,
        encoder_id=args.encoder_id,
        asset_class=args.asset_class,
        watch=WatchRule(args.watch_z, args.min_effect),
        halt=parse_halt_rule(args.halt),
        stride=args.stride,
        arl_windows=args.arl_windows,
    )
    table = load_embeddings(args.input, column=args.column, time_column=args.time_column)
    targets = None if args.targets is None else load_embeddings(args.targets, column=args.column)
    job = FitJob(
        table, args.out, config, targets, backend=args.backend, device=args.device,
        progress=not args.quiet and sys.stderr.isatty(),
    )  # fmt: skip
    job.validate()  # before opening (or creating) the ledger
    with _open_ledger(args) as ledger:
        baseline = job.run(ledger, args.actor or default_actor())
    _print_summary(baseline, args.out)
    return 0


def _summary(baseline: Baseline) -> dict[str, Any]:
    return {
        "version": baseline.version,
        "manifest_sha256": baseline.manifest_sha256,
        "asset_class": baseline.config.asset_class,
        "encoder_id": baseline.encoder_id,
        "dimension": baseline.dimension,
        "reference_rows": len(baseline.reference),
        "bandwidth": baseline.bandwidth.to_json(),
        "window_sizes": list(baseline.window_sizes),
        "null_windows": {str(n): null.count for n, null in baseline.nulls.items()},
        "max_z": {str(n): round(null.max_z, 3) for n, null in baseline.nulls.items()},
        "witness": baseline.witness is not None,
        "halt_rule": baseline.config.halt.to_json(),
        "arl0": {str(n): entry for n, entry in baseline.arl0.items()},
    }


def _print_summary(baseline: Baseline, where: Path) -> None:
    info = _summary(baseline)
    print(f"baseline {info['version']} written to {where}")
    print(f"  manifest sha256  {info['manifest_sha256']}")
    print(f"  encoder          {info['encoder_id'] or '(unnamed)'}  dimension {info['dimension']}")
    print(f"  reference rows   {info['reference_rows']}  bandwidth {baseline.bandwidth.id}")
    for size, entry in info["arl0"].items():
        estimate = entry["arl0_estimate"]
        seen = f"{estimate:.0f}" if estimate else f"> {entry['arl0_lower_95']:.0f} (none seen)"
        print(
            f"  window {size:>5}     null {info['null_windows'][size]} windows, max z "
            f"{info['max_z'][size]}; ARL0 of {baseline.config.halt.describe()}: {seen} windows"
        )


def _show(args: argparse.Namespace) -> int:
    baseline = load_baseline(args.artifact)
    evidence = None
    if args.pubkeys is not None:
        evidence = verify_baseline_evidence(args.artifact, args.pubkeys)
    if args.json:
        print(json.dumps({**_summary(baseline), "ledger_evidence": evidence}, indent=2))
    else:
        _print_summary(baseline, args.artifact)
        if evidence:
            print(f"  ledger evidence  {evidence}")
    return 0


def _policy(args: argparse.Namespace, baseline: Baseline) -> WindowPolicy:
    if args.window_duration is not None:
        if args.window_size or args.stride:
            raise InputError("--window-duration", "use either count or time windows, not both")
        return WindowPolicy(
            min(baseline.window_sizes),
            duration_ns=args.window_duration,
            stride_ns=args.window_stride,
        )
    size = args.window_size or baseline.window_sizes[0]
    return WindowPolicy(size, stride=args.stride or baseline.config.stride)


def _score(args: argparse.Namespace) -> int:
    baseline = load_baseline(args.baseline)
    table = load_embeddings(args.input, column=args.column, time_column=args.time_column)
    job = ScoreJob(
        table, baseline, args.asset or baseline.config.asset_class, _policy(args, baseline),
        series_dir=args.series, encoder_id=args.encoder_id, backend=args.backend,
        device=args.device,
    )  # fmt: skip
    transitions: list[Transition] = []
    with _open_ledger(args) as ledger:
        results = job.run(
            ledger,
            args.actor or default_actor(),
            listeners=[lambda event: transitions.append(event.transition)],
        )
    if args.json:
        for result in results:
            print(json.dumps(_json_safe(result.__dict__)))
    else:
        _print_table(results, baseline)
    for transition in transitions:
        print(
            f"alert {transition.asset}: {transition.before.value} -> {transition.after.value} "
            f"at window {transition.window} ({transition.reason}); recorded in {args.db}",
            file=sys.stderr,
        )
    return 0


def _json_safe(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in obj.items()
    }


def _fmt(value: float, spec: str) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return format(value, spec)


def _print_table(results: list[WindowResult], baseline: Baseline) -> None:
    header = (
        f"{'window':>6} {'rows':>11} {'n':>5} {'MMD2':>10} {'z':>6} {'p':>7} "
        f"{'effect':>7} {'lambda':>14} {'sim z':>6}  level"
    )
    print(f"baseline {baseline.version}  bandwidth {baseline.bandwidth.id}")
    print(header)
    for r in results:
        lam = "-" if math.isnan(r.lambda_hat) else f"{r.lambda_hat:.3f}±{r.lambda_se:.3f}"
        print(
            f"{r.window:>6} {r.start_row:>5}-{r.end_row:<5} {r.scored_rows:>5} "
            f"{_fmt(r.mmd2, '.3e'):>10} {_fmt(r.z, '.2f'):>6} {_fmt(r.p, '.4f'):>7} "
            f"{_fmt(r.effect, '.4f'):>7} {lam:>14} {_fmt(r.z_similarity, '.2f'):>6}  "
            f"{r.level if r.status == 'scored' else r.status}"
        )
    counts = {level: sum(r.level == level for r in results) for level in ("watch", "halt")}
    print(f"{len(results)} windows; watch {counts['watch']}, halt {counts['halt']}")
