"""Shared pieces of the server tests: a small fitted baseline, configs, embeddings on the wire."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from divergence_data import gaussian, model_like
from lineage_audit.divergence import BaselineConfig, fit_baseline, save_baseline
from lineage_audit.ledger import generate_keys

N = 32  # window size of the test baselines
ENCODER = "enc-a"


def fit_small_baseline(path: Path, seed: int = 11, *, rows: int = 3000) -> Path:
    rng = np.random.default_rng(seed)
    config = BaselineConfig(
        window_sizes=(N,), null_windows=1000, arl_windows=100, encoder_id=ENCODER,
        asset_class="news",
    )  # fmt: skip
    baseline = fit_baseline(
        gaussian(rng, rows), config=config, targets=model_like(rng, 200), backend="numpy"
    )
    save_baseline(baseline, path)
    return path


def write_server_config(
    folder: Path, baseline: Path, *, extra_server: str = "", extra: str = "", ledger: bool = True
) -> Path:
    """A server TOML in ``folder`` (keys generated there when ``ledger``), any free ports."""
    text = (
        f'[server]\nhost = "127.0.0.1"\nport = 0\nhttp_port = 0\nseries_dir = "series"\n'
        f"{extra_server}\n"
    )
    if ledger:
        if not (folder / "keys").exists():
            generate_keys(folder / "keys", name="test.lineage-audit.local/ledger")
        text += '[ledger]\ndb = "ledger.db"\nkeys = "keys"\n\n'
    text += f'[assets.news]\nbaseline = "{baseline}"\nwindow = {N}\nbackend = "numpy"\n\n{extra}'
    path = folder / "server.toml"
    path.write_text(text, encoding="utf-8")
    return path


def clean_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    return gaussian(rng, rows).astype(np.float32)


def shifted_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    return model_like(rng, rows).astype(np.float32)
