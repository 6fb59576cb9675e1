"""Synthetic embedding streams for the Tier 3 tests (seeded, reproducible).

Rows are a common centre plus noise before L2 normalisation, so, like real sentence
embeddings, they share a dominant direction instead of being uniform on the sphere.
"""

from __future__ import annotations

import numpy as np

DIM = 16


def _centre(dim: int) -> np.ndarray:
    centre = np.zeros(dim)
    centre[-1] = 2.0
    return centre


def gaussian(rng: np.random.Generator, rows: int, dim: int = DIM) -> np.ndarray:
    return (_centre(dim) + rng.standard_normal((rows, dim))).astype(np.float32)


def heavy_tailed(rng: np.random.Generator, rows: int, dim: int = DIM) -> np.ndarray:
    """A three-cluster mixture with Student-t (3 d.o.f.) noise: skewed, heavy tails."""
    centres = np.random.default_rng(99).standard_normal((3, dim)) * 1.5 + _centre(dim)
    which = rng.choice(3, size=rows, p=[0.6, 0.3, 0.1])
    noise = rng.standard_t(3, size=(rows, dim))
    return (centres[which] + noise).astype(np.float32)


def model_like(rng: np.random.Generator, rows: int, dim: int = DIM, shift: float = 2.5):
    """The 'model-generated' component: less diverse (a tight cluster) and moved off-centre."""
    centre = _centre(dim)
    centre[0] += shift
    return (centre + 0.35 * rng.standard_normal((rows, dim))).astype(np.float32)


def mixed_window(
    rng: np.random.Generator, rows: int, fraction: float, dim: int = DIM, shift: float = 2.5
) -> np.ndarray:
    """A window with round(fraction * rows) model-like rows among clean ones, shuffled."""
    bad = round(fraction * rows)
    window = np.concatenate([gaussian(rng, rows - bad, dim), model_like(rng, bad, dim, shift)])
    return window[rng.permutation(rows)]
