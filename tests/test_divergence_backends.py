"""Every backend available here agrees with a float64 reference; memory stays bounded."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from lineage_audit.divergence import BackendUnavailable, make_backend, prepare_embeddings
from lineage_audit.divergence.backends.base import exp_offset
from lineage_audit.divergence.backends.select import auto_backend_name

AVAILABLE = ["numpy"]
if importlib.util.find_spec("torch"):
    AVAILABLE.append("torch")
if importlib.util.find_spec("pykeops"):
    AVAILABLE.append("keops")


def test_ci_has_every_cpu_backend():
    # CI installs the torch and keops extras: a missing one must fail, not skip silently.
    assert AVAILABLE == ["numpy", "torch", "keops"]


def _unit(rng, rows, dim):
    return prepare_embeddings(rng.standard_normal((rows, dim)) + 1.5 * np.eye(dim)[0])


def _reference_cross(y, x, gamma):
    y64, x64 = y.astype(np.float64), x.astype(np.float64)
    d2 = (y64**2).sum(1)[:, None] + (x64**2).sum(1)[None, :] - 2 * y64 @ x64.T
    return np.exp(-gamma * d2).mean(axis=1)


def _reference_pairs(y, gamma):
    y64 = y.astype(np.float64)
    d2 = (y64**2).sum(1)[:, None] + (y64**2).sum(1)[None, :] - 2 * y64 @ y64.T
    k = np.exp(-gamma * d2)
    return float(k.sum() - np.trace(k))


@pytest.mark.parametrize("name", AVAILABLE)
@pytest.mark.parametrize("dim", [16, 96])
def test_backend_matches_float64_reference(name, dim):
    rng = np.random.default_rng(dim)
    x, y = _unit(rng, 700, dim), _unit(rng, 130, dim)
    gamma = 0.8
    backend = make_backend(name, device="cpu", block_rows=64)  # several blocks, ragged edges
    got = backend.cross_row_means(backend.to_device(y), backend.to_device(x), gamma)
    want = _reference_cross(y, x, gamma)
    assert got.dtype == np.float64 and got.shape == (130,)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    pairs = backend.pair_sum(backend.to_device(y), gamma)
    assert pairs == pytest.approx(_reference_pairs(y, gamma), rel=1e-5)


@pytest.mark.parametrize("name", AVAILABLE)
def test_mmd2_agrees_across_backends(name):
    """MMD² terms to 1e-5 of the kernel scale (MMD² itself can be ~0, so relative to it
    would be meaningless under the null)."""
    rng = np.random.default_rng(5)
    x, y = _unit(rng, 900, 32), _unit(rng, 200, 32)
    y[:50, 1] += 0.5
    y = prepare_embeddings(y)
    gamma = 1.1
    backend = make_backend(name, device="cpu", block_rows=128)
    xx = backend.pair_sum(backend.to_device(x), gamma) / (900 * 899)
    yy = backend.pair_sum(backend.to_device(y), gamma) / (200 * 199)
    xy = backend.cross_row_means(backend.to_device(y), backend.to_device(x), gamma).mean()
    ref_xx = _reference_pairs(x, gamma) / (900 * 899)
    ref_yy = _reference_pairs(y, gamma) / (200 * 199)
    ref_xy = _reference_cross(y, x, gamma).mean()
    mmd2, ref = xx + yy - 2 * xy, ref_xx + ref_yy - 2 * ref_xy
    assert abs(mmd2 - ref) <= 1e-5 * ref_xy
    assert ref > 1e-3  # contaminated: the plain relative error is meaningful too
    assert mmd2 == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("name", AVAILABLE)
def test_narrow_bandwidth_does_not_overflow(name):
    # 2*gamma > 80 takes the subtract-first path (exp(2*gamma*dot) would overflow float32)
    assert exp_offset(60.0)[0] == 120.0 and exp_offset(1.0)[0] == 0.0
    rng = np.random.default_rng(2)
    x, y = _unit(rng, 300, 8), _unit(rng, 40, 8)
    backend = make_backend(name, device="cpu", block_rows=100)
    got = backend.cross_row_means(backend.to_device(y), backend.to_device(x), 60.0)
    # float32 dot products err by ~1e-7; times 2*gamma = 120 that is ~1e-5 in the exponent
    np.testing.assert_allclose(got, _reference_cross(y, x, 60.0), rtol=1e-4, atol=1e-30)
    assert np.isfinite(got).all()


def test_block_size_does_not_change_results():
    rng = np.random.default_rng(3)
    x, y = _unit(rng, 1000, 24), _unit(rng, 100, 24)
    results = [
        make_backend("numpy", block_rows=b).cross_row_means(y, x, 0.9) for b in (7, 100, 4096)
    ]
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
    np.testing.assert_allclose(results[1], results[2], rtol=1e-6)


def test_unavailable_backends_say_why():
    with pytest.raises(BackendUnavailable, match="unknown backend 'tpu'"):
        make_backend("tpu")
    with pytest.raises(BackendUnavailable, match="cupy"):
        make_backend("cupy", device="cuda")  # not installed here, or no GPU
    with pytest.raises(BackendUnavailable, match="cpu only"):
        make_backend("numpy", device="cuda")
    if "torch" in AVAILABLE:
        with pytest.raises(BackendUnavailable, match="CUDA is unavailable"):
            make_backend("torch", device="cuda")


def test_auto_choice_follows_measured_crossovers(monkeypatch):
    # Measured here (benches/bench_divergence.py): KeOps on CPU beats blocked GEMM up to D=24
    # (vector exp, reference as columns); numpy beyond, and for small reductions.
    for dim in (8, 16, 24):
        assert auto_backend_name(dim, 10**9, "cpu") == ("keops", "cpu")
    for dim in (32, 384, 768):
        assert auto_backend_name(dim, 10**9, "cpu") == ("numpy", "cpu")
    assert auto_backend_name(16, 100, "cpu") == ("numpy", "cpu")
    assert auto_backend_name(768, 10**9, "auto")[1] == "cpu"  # no GPU here
    # KeOps compiles on first use: without a C++ compiler auto must not pick it.
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    assert auto_backend_name(16, 10**9, "cpu") == ("numpy", "cpu")


@pytest.mark.skipif("keops" not in AVAILABLE, reason="pykeops not installed")
def test_keops_passes_low_dimensions_as_columns():
    rng = np.random.default_rng(9)
    backend = make_backend("keops", device="cpu")
    low, high = backend.to_device(_unit(rng, 50, 16)), backend.to_device(_unit(rng, 50, 96))
    assert low.columns is not None and low.columns.shape == (16, 50)
    np.testing.assert_array_equal(low.columns.T, low.rows)
    assert high.columns is None
    part = low[10:20]  # slicing keeps both layouts in step, without a copy
    np.testing.assert_array_equal(part.columns.T, low.rows[10:20])
    assert np.shares_memory(part.columns, low.columns)
    window = backend.to_device(_unit(rng, 30, 16))
    backend.cross_row_means(window, low, 0.5)
    assert window._columns is None  # a window is only ever the row side: no column copy


_KEOPS_FLAGS_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    from lineage_audit.divergence import make_backend, prepare_embeddings
    rng = np.random.default_rng(4)
    x = prepare_embeddings(rng.standard_normal((500, 16)))
    y = prepare_embeddings(rng.standard_normal((40, 16)))
    keops = make_backend("keops", device="cpu")
    got = keops.cross_row_means(y, x, 0.7)
    want = make_backend("numpy").cross_row_means(y, x, 0.7)
    tiny = np.array([1e-38], dtype=np.float32) / np.float32(100)  # a subnormal result
    print(json.dumps({
        "flags": keops.compiler_flags,
        "max_rel": float(np.max(np.abs(got - want) / want)),
        "subnormal_kept": bool(tiny[0] != 0),
    }))
    """
)


def _last_line_in_fresh_process(script: str, env_extra: dict[str, str]) -> str:
    # keopscore reads its compiler flags once, at first import: each case needs a new process.
    env = {**os.environ, **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def _keops_in_fresh_process(env_extra: dict[str, str]) -> dict:
    return json.loads(_last_line_in_fresh_process(_KEOPS_FLAGS_SCRIPT, env_extra))


@pytest.mark.skipif("keops" not in AVAILABLE, reason="pykeops not installed")
def test_keops_cpu_flags_vectorise_without_flushing_subnormals():
    # -ffast-math would link crtfastmath.o and turn on flush-to-zero for the whole process
    # when KeOps loads its module; our flags get vector exp without it.
    from lineage_audit.divergence.backends.keops_backend import CPU_CXXFLAGS

    result = _keops_in_fresh_process({})
    assert CPU_CXXFLAGS in result["flags"] and "-ffast-math" not in result["flags"]
    assert result["subnormal_kept"], "loading the KeOps module turned on flush-to-zero"
    assert result["max_rel"] < 1e-5


@pytest.mark.skipif("keops" not in AVAILABLE, reason="pykeops not installed")
def test_keops_compile_failure_is_a_clear_error():
    script = textwrap.dedent(
        """
        import numpy as np
        from lineage_audit.divergence import BackendUnavailable, make_backend, prepare_embeddings
        x = prepare_embeddings(np.random.default_rng(1).standard_normal((50, 12)))
        backend = make_backend("keops", device="cpu")
        try:
            backend.cross_row_means(x, x, 0.5)
        except BackendUnavailable as error:
            print(error)
        """
    )
    flags = {"LINEAGE_AUDIT_KEOPS_CXXFLAGS": "-fno-such-flag-here"}
    message = _last_line_in_fresh_process(script, flags)
    assert "backend keops: its D=12 reduction did not compile" in message
    assert "-fno-such-flag-here" in message and "LINEAGE_AUDIT_KEOPS_CXXFLAGS=''" in message


@pytest.mark.skipif("keops" not in AVAILABLE, reason="pykeops not installed")
def test_keops_flags_can_be_replaced():
    # An empty override keeps KeOps' own flags (portable scalar code): same numbers, slower.
    result = _keops_in_fresh_process({"LINEAGE_AUDIT_KEOPS_CXXFLAGS": ""})
    assert "-march=native" not in result["flags"]
    assert result["subnormal_kept"] and result["max_rel"] < 1e-5


@pytest.mark.slow
def test_large_reference_scores_in_bounded_memory(tmp_path):
    """A 200k x 768 reference: one window scored with peak RSS of a few GB."""
    script = textwrap.dedent(
        """
        import json, resource
        import numpy as np
        from lineage_audit.divergence import Bandwidth, KernelScorer, make_backend
        rng = np.random.default_rng(0)
        ref = np.empty((200_000, 768), dtype=np.float32)
        for i in range(0, len(ref), 20_000):  # generate in chunks: no float64 copy
            part = rng.standard_normal((20_000, 768), dtype=np.float32)
            ref[i:i + 20_000] = part / np.linalg.norm(part, axis=1, keepdims=True)
        backend = make_backend("numpy", block_rows=2048)
        scorer = KernelScorer(ref, Bandwidth(1.0), backend, xx=0.0)
        window = rng.standard_normal((256, 768)).astype(np.float32)
        stat, cross = scorer.statistic(window)
        print(json.dumps({
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "xy": stat.xy, "rows": int(cross.shape[0]),
        }))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=600
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == 256 and 0 < result["xy"] < 1
    # the reference alone is 0.57 GiB; blocks add 16 MiB each
    assert result["peak_rss_gib"] < 3.0, result


@pytest.mark.skipif("keops" not in AVAILABLE, reason="pykeops not installed")
def test_keops_compiles_when_the_scorer_is_built_not_at_the_first_window():
    from lineage_audit.divergence import Bandwidth, KernelScorer

    backend = make_backend("keops", device="cpu")
    assert backend._routines == {}
    KernelScorer(_unit(np.random.default_rng(6), 40, 16), Bandwidth(1.0), backend, xx=0.0)
    assert set(backend._routines) == {(16, True)}  # compiled (or loaded) and ready


@pytest.mark.skipif("keops" not in AVAILABLE, reason="pykeops not installed")
def test_keops_row_layout_the_gpu_uses_gives_the_column_layouts_numbers(monkeypatch):
    from lineage_audit.divergence.backends import keops_backend

    rng = np.random.default_rng(8)
    x, y = _unit(rng, 600, 16), _unit(rng, 90, 16)
    columns = make_backend("keops", device="cpu", block_rows=64)
    monkeypatch.setattr(keops_backend, "COLUMN_MAX_DIM", 0)  # rows, as on a GPU
    rows = make_backend("keops", device="cpu", block_rows=64)
    assert rows.to_device(x).columns is None and columns.to_device(x).columns is not None
    want = _reference_cross(y, x, 0.9)
    for backend in (columns, rows):
        got = backend.cross_row_means(y, x, 0.9)
        np.testing.assert_allclose(got, want, rtol=1e-5)
