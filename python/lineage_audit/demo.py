"""``lineage-audit demo``: the main job — the ATLAS-FX scenario replayed through all five tiers.

A bank's FX commentary model (ATLAS-FX) reads eleven news sources. Its own commentary,
syndicated by a newswire, was used by a data vendor's quarterly refresh; four sources are
that vendor's products (convergence) and the model is fine-tuned daily on the feed (recursive
re-entry). Over 72 hours the syndicated share of the feed rises. The replay runs a real
``lineage-audit serve`` (SQLite, local files, CPU) and plays every party through its
interfaces: OpenLineage events (Tier 2) and AIBOM checks (Tier 1), the feed's embeddings
scored hour by hour (Tier 3, alerts and an incident opened by the server under the policy),
the model risk officer's acknowledgement and halt (a refused analyst; a signed webhook the
desk's gateway verifies), the nightly Tier 4 batch with a real small language model standing
in for ATLAS-FX, the vendor's late disclosure (re-entry), and the incident's audit artifact
(JSON + HTML) whose evidence bundle is verified offline. Every number comes from the product
run on generated data with a fixed seed. See docs/demo.md.

Counterfactuals of the same seed: ``--no-tier3`` (Tier 3 switched off), ``--no-vendors`` (no
source or vendor publishes lineage or an AIBOM), ``--no-tier4``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path("demo-out")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="replay the ATLAS-FX scenario through all five tiers (the main job)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder, emptied first (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI size: fewer rows per hour and fewer texts (about half the time)",
    )
    parser.add_argument(
        "--seed", type=int, default=2026, help="scenario seed (default: %(default)s)"
    )
    parser.add_argument(
        "--no-tier3",
        dest="tier3",
        action="store_false",
        help="counterfactual: Tier 3 switched off (no feed scored)",
    )
    parser.add_argument(
        "--no-tier4",
        dest="tier4",
        action="store_false",
        help="skip the Tier 4 batch (no language model needed)",
    )
    parser.add_argument(
        "--no-vendors",
        dest="vendors",
        action="store_false",
        help="counterfactual: zero cooperating vendors (no OpenLineage of their own, no AIBOMs)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .scenario.atlas_fx import FULL, QUICK, Scenario
    from .scenario.replay import run_replay

    scenario = Scenario(
        seed=args.seed,
        size=QUICK if args.quick else FULL,
        cooperating_vendors=args.vendors,
        tier3=args.tier3,
        tier4=args.tier4,
    )
    print(
        f"lineage-audit demo: ATLAS-FX, seed {scenario.seed}, size {scenario.size.name} "
        f"-> {args.out}/",
        flush=True,
    )
    replay = run_replay(scenario, args.out)
    checks = replay.checks
    ok = checks.get("all_valid") and all(checks.get("matches_construction", {}).values())
    ok = ok and checks.get("tamper_caught", True)
    if scenario.tier3 and scenario.cooperating_vendors and scenario.tier4:
        ok = ok and replay.incident_id is not None and checks.get("webhook_verified")
    print(
        f"demo finished in {checks.get('seconds')} s: "
        + (
            "every tier matches the construction and every verifier agrees"
            if ok
            else "UNEXPECTED RESULT (see above and summary.json)"
        )
    )
    print(
        f"  open {args.out}/report.html; verify offline: merkle-verify "
        f"{args.out}/evidence.bundle.json --keys {args.out}/keys.pub.json"
    )
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(
        run(
            argparse.Namespace(
                out=DEFAULT_OUT, quick=True, seed=2026, tier3=True, tier4=True, vendors=True
            )
        )
    )
