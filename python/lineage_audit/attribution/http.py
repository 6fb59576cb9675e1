"""The HTTP scorer: prompt log-probs from an OpenAI-compatible ``/v1/completions`` server.

Two request shapes give the log-prob of every prompt token:

- ``echo``: ``{"prompt": [...], "echo": true, "logprobs": 1, "max_tokens": 0}`` — the legacy
  OpenAI completions form (servers that refuse ``max_tokens: 0`` are asked for 1 token,
  which is then dropped by its text offset);
- ``prompt_logprobs``: ``{"prompt": [...], "prompt_logprobs": 0, "max_tokens": 1}`` — vLLM's
  extension (``choices[i].prompt_logprobs``, one ``{token_id: {logprob, decoded_token}}`` per
  position).

At start the scorer **probes** the server with a short text in each shape (or the one asked
for) and refuses a server that returns no prompt log-probs, naming what it tried. The first
prompt token has no log-prob (nothing precedes it, unless the server adds a BOS); only
tokens with one are scored, exactly as the local scorer does with the same tokenizer.

Only the sampled token's log-prob comes back, not the whole next-token distribution, so
Min-K%++ (which needs the vocabulary's mean and spread) is unavailable over HTTP; loss,
zlib, Min-K%, ReCaLL and ``ref_diff`` are.

ReCaLL sends ``prefix + text`` as one prompt; the text's scored tokens are the last tokens of
the echo. If the server tokenized the text differently after the prefix (the token strings
do not match the unconditional pass), ReCaLL is ``None`` for that text rather than a number
computed over different tokens.

The client is the standard library's ``urllib``: a timeout on every request, no retries
unless asked (``retries=N`` retries connection errors, timeouts, 429 and 5xx with
exponential backoff), the API key (if any) sent as a bearer token and never logged.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .errors import InputError, ScorerError
from .scorer import Scorer
from .scores import TokenLogprobs

__all__ = ["MODES", "PROBE_TEXT", "OpenAIScorer"]

MODES = ("echo", "prompt_logprobs")
PROBE_TEXT = "The quick brown fox jumps over the lazy dog, then rests by the river bank."
RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_MESSAGE = 300


class _HTTPFailure(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _endpoint(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError("base_url", "expected an http:// or https:// URL", base_url)
    url = base_url.rstrip("/")
    if url.endswith("/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/completions"
    return url + "/v1/completions"


class OpenAIScorer(Scorer):
    """Prompt log-probs of ``model`` served at ``base_url`` (OpenAI-compatible completions)."""

    distribution = False

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        model_id: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 0,
        mode: str = "auto",
        batch_size: int = 8,
        probe: bool = True,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise InputError("model", "expected the served model's name", model)
        if mode not in ("auto", *MODES):
            raise InputError("mode", f"expected auto or one of {', '.join(MODES)}", mode)
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise InputError("timeout", "must be a positive number of seconds", timeout)
        if not isinstance(retries, int) or retries < 0:
            raise InputError("retries", "must be an integer >= 0", retries)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError("batch_size", "must be an integer >= 1", batch_size)
        self.endpoint = _endpoint(base_url)
        self.model = model
        self.model_id = model_id or f"http:{model}"
        self.timeout = float(timeout)
        self.retries = retries
        self.batch_size = batch_size
        self._api_key = api_key
        self._echo_max_tokens = 0
        self.mode = mode
        if probe:
            self.mode = self.probe(mode)

    def __repr__(self) -> str:
        return f"OpenAIScorer({self.model!r} at {self.endpoint}, mode={self.mode!r})"

    def describe(self) -> dict[str, object]:
        return {
            "model_id": self.model_id,
            "kind": "openai-http",
            "endpoint": self.endpoint,
            "model": self.model,
            "mode": self.mode,
            "echo_max_tokens": self._echo_max_tokens if self.mode == "echo" else None,
        }

    # --- transport -----------------------------------------------------------------------

    def _post_once(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            self.endpoint, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _HTTPFailure(exc.code, _error_message(exc)) from None
        except TimeoutError:
            raise _HTTPFailure(None, f"no answer within {self.timeout:g} s") from None
        except urllib.error.URLError as exc:
            raise _HTTPFailure(None, f"cannot connect: {exc.reason}") from None
        except OSError as exc:
            raise _HTTPFailure(None, f"connection failed: {exc}") from None
        try:
            data = json.loads(raw)
        except ValueError:
            raise _HTTPFailure(200, f"the answer is not JSON: {raw[:80]!r}") from None
        if not isinstance(data, dict):
            raise _HTTPFailure(200, "the answer is not a JSON object")
        return data

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            try:
                return self._post_once(body)
            except _HTTPFailure as failure:
                retryable = failure.status is None or failure.status in RETRY_STATUS
                if not retryable or attempt == self.retries:
                    raise
                time.sleep(min(0.5 * 2**attempt, 8.0))
        raise AssertionError("unreachable")

    # --- request shapes ------------------------------------------------------------------

    def _body(self, mode: str, prompts: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "prompt": prompts, "temperature": 0}
        if mode == "echo":
            body.update(echo=True, logprobs=1, max_tokens=self._echo_max_tokens)
        else:
            body.update(prompt_logprobs=0, max_tokens=1)
        return body

    def _parse(self, mode: str, data: dict[str, Any], prompts: list[str]) -> list[TokenLogprobs]:
        choices = data.get("choices")
        if not isinstance(choices, list) or len(choices) != len(prompts):
            got = len(choices) if isinstance(choices, list) else "no"
            raise _HTTPFailure(200, f"{got} choices for {len(prompts)} prompts")
        by_index = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
        out = []
        for prompt, choice in zip(prompts, by_index, strict=True):
            if not isinstance(choice, dict):
                raise _HTTPFailure(200, "a choice is not an object")
            if mode == "echo":
                tokens, logprobs = _echo_tokens(choice, prompt, self._echo_max_tokens)
            else:
                tokens, logprobs = _prompt_logprob_tokens(choice)
            out.append(_token_logprobs(tokens, logprobs))
        return out

    def _request(self, mode: str, prompts: list[str]) -> list[TokenLogprobs]:
        return self._parse(mode, self._post(self._body(mode, prompts)), prompts)

    # --- probing -------------------------------------------------------------------------

    def probe(self, mode: str = "auto") -> str:
        """The first request shape that returns prompt log-probs; :class:`ScorerError` if
        none does."""
        tried = []
        for candidate in MODES if mode == "auto" else (mode,):
            attempts = (0, 1) if candidate == "echo" else (None,)
            for max_tokens in attempts:
                if max_tokens is not None:
                    self._echo_max_tokens = max_tokens
                label = candidate if max_tokens is None else f"echo (max_tokens {max_tokens})"
                try:
                    result = self._request(candidate, [PROBE_TEXT])[0]
                except _HTTPFailure as failure:
                    # Unreachable, unauthorised, unknown model, overloaded: no other request
                    # shape will fare better.
                    if (
                        failure.status is None
                        or failure.status in (401, 403, 404)
                        or (failure.status >= 500)
                    ):
                        hint = " (check the API key)" if failure.status in (401, 403) else ""
                        raise ScorerError(
                            f"{self.endpoint}: {_status(failure)}{failure.message}{hint}"
                        ) from None
                    tried.append(f"{label}: {_status(failure)}{failure.message}")
                    continue
                if result.n_scored > 0:
                    return candidate
                tried.append(f"{label}: no log-probs")
        raise ScorerError(
            f"{self.endpoint}: the server returned no prompt log-probs for model "
            f"{self.model!r} (tried {'; '.join(tried)}). Tier 4 needs the log-prob of every "
            "prompt token: use a server that honours echo with logprobs on /v1/completions, "
            "or vLLM's prompt_logprobs"
        )

    # --- the Scorer interface ------------------------------------------------------------

    def _score(self, prompts: list[str], field: str) -> list[TokenLogprobs]:
        out: list[TokenLogprobs] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            try:
                out.extend(self._request(self.mode, batch))
            except _HTTPFailure as failure:
                if failure.status is None or failure.status >= 500 or len(batch) == 1:
                    raise self._failure(failure, field, start, batch) from None
                # A 4xx for a batch: find the text the server refuses.
                for offset, prompt in enumerate(batch):
                    try:
                        out.extend(self._request(self.mode, [prompt]))
                    except _HTTPFailure as single:
                        raise self._failure(single, field, start + offset, [prompt]) from None
        for index, tokens in enumerate(out):
            if tokens.n_scored == 0:
                raise InputError(
                    f"{field}[{index}]",
                    f"the server scored none of its {tokens.n_tokens} token(s) (too short)",
                )
        return out

    def _failure(
        self, failure: _HTTPFailure, field: str, index: int, batch: list[str]
    ) -> Exception:
        where = f"{self.endpoint}: {_status(failure)}{failure.message}"
        if failure.status is not None and 400 <= failure.status < 500 and len(batch) == 1:
            if failure.status in (401, 403):
                return ScorerError(f"{where} (check the API key)")
            return InputError(f"{field}[{index}]", f"the server refused it ({where})")
        return ScorerError(where)

    def token_logprobs(self, texts: Sequence[str]) -> list[TokenLogprobs]:
        return self._score(list(texts), "texts")

    def conditional_logprobs(
        self, prefix: str, texts: Sequence[str], unconditional: Sequence[TokenLogprobs]
    ) -> list[np.ndarray | None]:
        conditional = self._score([prefix + text for text in texts], "texts")
        out: list[np.ndarray | None] = []
        for cond, uncond in zip(conditional, unconditional, strict=True):
            m = uncond.n_scored
            aligned = (
                cond.tokens is not None
                and uncond.tokens is not None
                and cond.n_scored >= m
                and cond.tokens[cond.n_scored - m :] == uncond.tokens
            )
            out.append(cond.logprobs[cond.n_scored - m :].copy() if aligned else None)
        return out


# --- response parsing ------------------------------------------------------------------------


def _status(failure: _HTTPFailure) -> str:
    return f"HTTP {failure.status}: " if failure.status is not None else ""


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read()
        data = json.loads(raw)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message", error) if isinstance(error, dict) else error
        text = message if isinstance(message, str) else json.dumps(message)
    except (OSError, ValueError):
        text = exc.reason if isinstance(exc.reason, str) else str(exc)
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _echo_tokens(
    choice: dict[str, Any], prompt: str, max_tokens: int
) -> tuple[list[str], list[float | None]]:
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return [], []
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list) or len(tokens) != len(values):
        raise _HTTPFailure(200, "logprobs.tokens and logprobs.token_logprobs do not pair up")
    if max_tokens > 0:  # drop the generated token(s): they start at or after the prompt's end
        offsets = logprobs.get("text_offset")
        if isinstance(offsets, list) and len(offsets) == len(tokens):
            keep = sum(1 for o in offsets if isinstance(o, int) and o < len(prompt))
        else:
            keep = max(0, len(tokens) - max_tokens)
        tokens, values = tokens[:keep], values[:keep]
    return [str(t) for t in tokens], values


def _prompt_logprob_tokens(choice: dict[str, Any]) -> tuple[list[str], list[float | None]]:
    entries = choice.get("prompt_logprobs")
    if not isinstance(entries, list):
        return [], []
    ids = choice.get("prompt_token_ids")
    tokens: list[str] = []
    values: list[float | None] = []
    for position, entry in enumerate(entries):
        if entry is None:
            tokens.append("")
            values.append(None)
            continue
        if not isinstance(entry, dict) or not entry:
            raise _HTTPFailure(200, f"prompt_logprobs[{position}] is not an object")
        if len(entry) == 1:
            info = next(iter(entry.values()))
        elif isinstance(ids, list) and position < len(ids) and str(ids[position]) in entry:
            info = entry[str(ids[position])]
        else:
            raise _HTTPFailure(
                200, f"prompt_logprobs[{position}] lists several tokens and no prompt_token_ids"
            )
        if not isinstance(info, dict):
            raise _HTTPFailure(200, f"prompt_logprobs[{position}] entry is not an object")
        tokens.append(str(info.get("decoded_token", "")))
        values.append(info.get("logprob"))
    return tokens, values


def _token_logprobs(tokens: list[str], values: list[float | None]) -> TokenLogprobs:
    """Scored tokens are those with a log-prob; they must follow every unscored one."""
    scored = [i for i, v in enumerate(values) if v is not None]
    if scored and scored != list(range(scored[0], len(values))):
        raise _HTTPFailure(200, "a prompt token after the first has no log-prob")
    lp = []
    for i in scored:
        value = values[i]
        if isinstance(value, bool) or not isinstance(value, int | float) or value > 1e-6:
            raise _HTTPFailure(200, f"log-prob of prompt token {i} is not a number <= 0: {value!r}")
        lp.append(min(float(value), 0.0))
    return TokenLogprobs(
        logprobs=np.asarray(lp, dtype=np.float32),
        n_tokens=len(tokens),
        tokens=tuple(tokens[i] for i in scored),
    )
