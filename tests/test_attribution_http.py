"""The HTTP scorer against a real loopback server (aiohttp) that serves the tiny GPT-2's real
prompt log-probs: the same scores as the local scorer in both request shapes; a server
without prompt log-probs, an over-long text, an unreachable or unauthorised server, and
retries, each with a clear error."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from attribution_models import make_tokenizer, torch_threads, trained_tiny
from lineage_audit.attribution import OpenAIScorer, ScoreConfig, score_texts
from lineage_audit.attribution.errors import InputError, ScorerError

pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("transformers", reason="the realtext extra is not installed")
from attribution_server import LogprobServer
from lineage_audit.attribution.local import TransformersScorer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny():
    return trained_tiny()


@pytest.fixture(scope="module")
def local(tiny) -> TransformersScorer:
    return TransformersScorer(tiny.model, tiny.tokenizer, device="cpu", batch_size=8)


def _texts(tiny) -> list[str]:
    return tiny.members[:6] + tiny.nonmembers[:5]


@pytest.mark.parametrize("mode", ["echo", "prompt_logprobs"])
def test_http_scores_equal_local_scores(tiny, local, mode) -> None:
    config = ScoreConfig(recall_prefix=tiny.prefix)
    texts = _texts(tiny)
    with LogprobServer(tiny.model, tiny.tokenizer, modes=(mode,)) as server:
        remote = OpenAIScorer(server.url, "tiny-gpt2", batch_size=4)
        assert remote.mode == mode
        over_http = score_texts(remote, texts, config)
    here = score_texts(local, texts, config)
    for a, b in zip(over_http, here, strict=True):
        assert a.evidence.unconditional.n_scored == b.evidence.unconditional.n_scored
        np.testing.assert_allclose(
            a.evidence.unconditional.logprobs, b.evidence.unconditional.logprobs, atol=2e-5
        )
        np.testing.assert_allclose(
            a.evidence.recall_logprobs, b.evidence.recall_logprobs, atol=2e-5
        )
        for name in ("loss", "zlib", "min_k", "recall"):
            assert a.scores[name] == pytest.approx(b.scores[name], abs=1e-4), name
        # Min-K%++ needs the whole next-token distribution, which the API does not return.
        assert a.scores["min_k_plus_plus"] is None and b.scores["min_k_plus_plus"] is not None
    # Batched: 11 texts in requests of at most 4 prompts (plus the probe).
    sizes = [len(r["prompt"]) for r in server.requests]
    assert sizes[0] == 1 and max(sizes) == 4


def test_echo_with_one_generated_token_when_zero_is_refused(tiny, local) -> None:
    texts = _texts(tiny)
    with LogprobServer(tiny.model, tiny.tokenizer, modes=("echo",),
                       allow_zero_max_tokens=False) as server:  # fmt: skip
        remote = OpenAIScorer(server.url, "tiny-gpt2")
        assert remote.describe()["echo_max_tokens"] == 1
        result = remote.token_logprobs(texts)
    for a, b in zip(result, local.token_logprobs(texts), strict=True):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=2e-5)  # generated token dropped


def test_a_bos_tokenizer_over_http(tiny) -> None:
    tokenizer = make_tokenizer(tiny.chain.words, bos=True)
    texts = _texts(tiny)
    with LogprobServer(tiny.model, tokenizer) as server:
        remote = OpenAIScorer(server.url, "tiny-gpt2").token_logprobs(texts)
    here = TransformersScorer(tiny.model, tokenizer, device="cpu").token_logprobs(texts)
    for a, b in zip(remote, here, strict=True):
        assert a.n_tokens == b.n_tokens and a.n_scored == b.n_scored == b.n_tokens - 1
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=2e-5)


def test_a_server_without_prompt_logprobs_is_refused(tiny) -> None:
    with LogprobServer(tiny.model, tiny.tokenizer, modes=()) as server:
        with pytest.raises(ScorerError) as info:
            OpenAIScorer(server.url, "tiny-gpt2")
        message = str(info.value)
        assert "returned no prompt log-probs for model 'tiny-gpt2'" in message
        assert "echo (max_tokens 0): no log-probs" in message
        assert "prompt_logprobs: no log-probs" in message
        with pytest.raises(ScorerError, match="no prompt log-probs"):
            OpenAIScorer(server.url, "tiny-gpt2", mode="prompt_logprobs")


def test_a_text_longer_than_the_server_context_is_named(tiny) -> None:
    texts = tiny.members[:2] + tiny.chain.texts(1, seed=12, lengths=(90, 90)) + tiny.members[2:3]
    with LogprobServer(tiny.model, tiny.tokenizer, context=64) as server:
        remote = OpenAIScorer(server.url, "tiny-gpt2", batch_size=4)
        with pytest.raises(InputError) as info:
            remote.token_logprobs(texts)
    assert info.value.field == "texts[2]"
    assert "HTTP 400: This model's maximum context length is 64 tokens" in str(info.value)


def test_unreachable_unauthorised_and_unknown_model_are_clear(tiny) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens
    with pytest.raises(ScorerError, match=r"127\.0\.0\.1:\d+/v1/completions: cannot connect"):
        OpenAIScorer(f"http://127.0.0.1:{port}", "tiny-gpt2", timeout=5)
    with LogprobServer(tiny.model, tiny.tokenizer, api_key="s3cret-key") as server:
        with pytest.raises(
            ScorerError, match=r"HTTP 401: invalid API key \(check the API key\)"
        ) as info:
            OpenAIScorer(server.url, "tiny-gpt2", api_key="wrong-key")
        assert "wrong-key" not in str(info.value)  # keys never appear in errors
        ok = OpenAIScorer(server.url + "/v1", "tiny-gpt2", api_key="s3cret-key")
        assert ok.token_logprobs(tiny.members[:1])[0].n_scored > 0
        with pytest.raises(ScorerError, match="HTTP 404: The model `other` does not exist"):
            OpenAIScorer(server.url, "other", api_key="s3cret-key")
    with pytest.raises(InputError, match="base_url: expected an http"):
        OpenAIScorer("ftp://example.invalid", "m", probe=False)
    with pytest.raises(InputError, match="timeout: must be a positive"):
        OpenAIScorer("http://127.0.0.1:1", "m", timeout=0, probe=False)


def test_retries_are_off_by_default(tiny) -> None:
    with LogprobServer(tiny.model, tiny.tokenizer) as server:
        remote = OpenAIScorer(server.url, "tiny-gpt2")
        server.fail_next = 1
        with pytest.raises(ScorerError, match="HTTP 503: overloaded"):
            remote.token_logprobs(tiny.members[:2])
        patient = OpenAIScorer(server.url, "tiny-gpt2", retries=2)
        server.fail_next = 2
        assert len(patient.token_logprobs(tiny.members[:2])) == 2
        assert server.fail_next == 0
