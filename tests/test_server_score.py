"""The gRPC ScoringService on loopback: scores equal the in-process engine's, bad input is
refused with the right status code and a message naming the problem, health and reflection."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys

import grpc
import numpy as np
import pytest
from divergence_data import DIM, gaussian, model_like
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from lineage_audit._generated.lineage_audit.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc
from lineage_audit.divergence import BaselineConfig, fit_baseline, load_baseline, save_baseline
from lineage_audit.divergence.monitor import AssetMonitor, WindowPolicy
from lineage_audit.server import AssetConfig, ServerConfig, ServerThread
from lineage_audit.server.config import ConfigError

N = 32


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    rng = np.random.default_rng(11)
    config = BaselineConfig(
        window_sizes=(N,), null_windows=1000, arl_windows=100, encoder_id="enc-a",
        asset_class="news",
    )  # fmt: skip
    baseline = fit_baseline(
        gaussian(rng, 3000), config=config, targets=model_like(rng, 200), backend="numpy"
    )
    path = tmp_path_factory.mktemp("bl") / "baseline"
    save_baseline(baseline, path)
    return path


@pytest.fixture(scope="module")
def server(baseline_dir):
    config = ServerConfig(
        assets={"news": AssetConfig(baseline_dir, backend="numpy")},
        port=0,
        http_port=-1,
        max_rows=1000,
    )
    with ServerThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel):
    return scoring_pb2_grpc.ScoringServiceStub(channel)


def _request(rows, asset="news", *, shape=None, data=None, encoder_id="", request_id="r1"):
    rows = np.asarray(rows, dtype="<f4")
    embeddings = common_pb2.Embeddings(
        data=rows.tobytes() if data is None else data,
        shape=list(rows.shape) if shape is None else shape,
        encoder_id=encoder_id,
    )
    return scoring_pb2.ScoreRequest(asset_class=asset, embeddings=embeddings, request_id=request_id)


def _refused(stub, request):
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(request, timeout=30)
    return info.value.code(), info.value.details()


def test_score_equals_the_in_process_engine(stub, baseline_dir):
    rng = np.random.default_rng(5)
    local = AssetMonitor("news", load_baseline(baseline_dir), WindowPolicy(N), backend="numpy")
    for rows in (gaussian(rng, N), model_like(rng, N)):
        reply = stub.Score(_request(rows, encoder_id="enc-a"), timeout=30)
        expected = local.evaluate(rows.astype(np.float32), encoder_id="enc-a")
        got = reply.result
        assert reply.request_id == "r1"
        assert got.status == "scored" and got.window == -1 and got.rows == N
        assert got.z == pytest.approx(expected.z, rel=1e-9, abs=1e-12)
        assert got.mmd2 == pytest.approx(expected.mmd2, rel=1e-9, abs=1e-15)
        assert got.p == pytest.approx(expected.p)
        assert got.baseline_version == expected.baseline_version
        assert got.bandwidth_id == expected.bandwidth_id
        assert got.level == common_pb2.LEVEL_OK
        assert not got.HasField("start_time_ns")
    assert got.z > 2  # the shifted batch is far out: the comparison is not between two zeros


BAD = {
    "dimension": (
        lambda rng: _request(gaussian(rng, N, dim=DIM + 1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("embeddings.shape", f"dimension {DIM + 1}", f"baseline's {DIM}"),
    ),
    "nan": (
        lambda rng: _request(np.where(np.arange(N)[:, None] == 3, np.nan, gaussian(rng, N))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("embeddings[3][0]", "not a finite number"),
    ),
    "inf": (
        lambda rng: _request(np.where(np.arange(N)[:, None] == 0, np.inf, gaussian(rng, N))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("embeddings[0][0]", "not a finite number"),
    ),
    "bytes": (
        lambda rng: _request(gaussian(rng, N), data=gaussian(rng, N).astype("<f4").tobytes()[:-2]),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("embeddings.data", f"{4 * N * DIM - 2} bytes", f"needs 4 * {N} * {DIM} = {4 * N * DIM}"),
    ),
    "rank": (
        lambda rng: _request(gaussian(rng, N), shape=[N * DIM]),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("embeddings.shape", "expected 2 entries"),
    ),
    "empty": (
        lambda rng: _request(np.zeros((0, DIM))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("embeddings.shape", "empty"),
    ),
    "zero_row": (
        lambda rng: _request(np.where(np.arange(N)[:, None] == 2, 0.0, gaussian(rng, N))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("embeddings[2]", "zero vector"),
    ),
    "unknown_asset": (
        lambda rng: _request(gaussian(rng, N), asset="images"),
        grpc.StatusCode.NOT_FOUND,
        ("asset_class", "'images'", "news"),
    ),
    "missing_asset": (
        lambda rng: _request(gaussian(rng, N), asset=""),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("asset_class", "missing"),
    ),
    "uncalibrated_size": (
        lambda rng: _request(gaussian(rng, N + 1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("embeddings.shape", f"{N + 1} rows", f"[{N}]"),
    ),
    "too_many_rows": (
        lambda rng: _request(gaussian(rng, 1001)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        ("embeddings.shape", "1001 rows", "limit of 1000"),
    ),
    "encoder": (
        lambda rng: _request(gaussian(rng, N), encoder_id="enc-b"),
        grpc.StatusCode.FAILED_PRECONDITION,
        ("embeddings.encoder_id", "'enc-b'", "'enc-a'"),
    ),
    "no_embeddings": (
        lambda rng: scoring_pb2.ScoreRequest(asset_class="news"),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("embeddings: missing",),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_with_a_named_problem_and_the_server_keeps_serving(stub, case):
    make, code, needles = BAD[case]
    rng = np.random.default_rng(3)
    got_code, details = _refused(stub, make(rng))
    assert got_code == code, details
    for needle in needles:
        assert needle in details, (needle, details)
    reply = stub.Score(_request(gaussian(rng, N)), timeout=30)
    assert reply.result.status == "scored" and math.isfinite(reply.result.z)


def test_oversized_message_is_resource_exhausted(baseline_dir):
    config = ServerConfig(
        assets={"news": AssetConfig(baseline_dir, backend="numpy")}, port=0, http_port=-1,
        max_message_bytes=4096,
    )  # fmt: skip
    rng = np.random.default_rng(2)
    with ServerThread(config) as running, grpc.insecure_channel(running.address) as ch:
        stub = scoring_pb2_grpc.ScoringServiceStub(ch)
        assert stub.Score(_request(gaussian(rng, N)), timeout=30).result.status == "scored"
        code, details = _refused(stub, _request(gaussian(rng, 2 * N)))  # 4 KiB + framing
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert "4096" in details, details
        assert stub.Score(_request(gaussian(rng, N)), timeout=30).result.status == "scored"


def test_health_reports_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "lineage_audit.v1.ScoringService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"lineage_audit.v1.ScoringService", "grpc.health.v1.Health"} <= services
    found = database.FindFileContainingSymbol("lineage_audit.v1.ScoringService")
    assert found.name == "lineage_audit/v1/scoring.proto"


def test_stream_score_returns_completed_windows_with_levels(server, baseline_dir):
    rng = np.random.default_rng(9)
    with grpc.insecure_channel(server.address) as ch:
        stub = scoring_pb2_grpc.ScoringServiceStub(ch)
        batches = [gaussian(rng, N - 5), gaussian(rng, 10), gaussian(rng, 2 * N)]
        requests = [_request(b, request_id=f"b{i}") for i, b in enumerate(batches)]
        replies = list(stub.StreamScore(iter(requests), timeout=60))
    assert [r.request_id for r in replies] == ["b0", "b1", "b2"]
    assert [len(r.windows) for r in replies] == [0, 1, 2]
    assert [r.pending_rows for r in replies] == [N - 5, 5, 5]
    windows = [w for r in replies for w in r.windows]
    assert [w.window for w in windows] == [0, 1, 2]
    assert [(w.start_row, w.end_row) for w in windows] == [(0, N), (N, 2 * N), (2 * N, 3 * N)]
    assert all(w.level == common_pb2.LEVEL_OK for w in windows)


def test_stream_score_bad_request_ends_the_stream_with_its_code(server):
    rng = np.random.default_rng(4)
    with grpc.insecure_channel(server.address) as ch:
        stub = scoring_pb2_grpc.ScoringServiceStub(ch)
        requests = [_request(gaussian(rng, N, dim=DIM - 1))]
        with pytest.raises(grpc.RpcError) as info:
            list(stub.StreamScore(iter(requests), timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "embeddings.shape" in info.value.details()


def test_config_from_toml(tmp_path, baseline_dir):
    path = tmp_path / "server.toml"
    path.write_text(
        f'[server]\nport = 0\nmax_rows = 500\n\n[assets.news]\nbaseline = "{baseline_dir}"\n'
        'window = 32\nbackend = "numpy"\n',
        encoding="utf-8",
    )
    config = ServerConfig.from_toml(path)
    assert config.port == 0 and config.max_rows == 500
    assert config.assets["news"] == AssetConfig(baseline_dir, window=32, backend="numpy")
    path.write_text("[server]\nprot = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"server\.prot: unknown key"):
        ServerConfig.from_toml(path)


def test_serve_cli_serves_from_a_toml_config_and_stops_on_sigterm(tmp_path, baseline_dir):
    path = tmp_path / "server.toml"
    path.write_text(
        f'[server]\nport = 50999\n\n[assets.news]\nbaseline = "{baseline_dir}"\n'
        'backend = "numpy"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "LINEAGE_AUDIT_PORT": "1"}  # the --port flag wins over the env
    proc = subprocess.Popen(
        [sys.executable, "-m", "lineage_audit", "serve", "--config", str(path), "--port", "0",
         "--http-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("serving on 127.0.0.1:"), (line, proc.stderr.read())
        address = line.removeprefix("serving on ")
        assert not address.endswith((":0", ":1", ":50999"))
        with grpc.insecure_channel(address) as ch:
            stub = scoring_pb2_grpc.ScoringServiceStub(ch)
            reply = stub.Score(_request(gaussian(np.random.default_rng(1), N)), timeout=30)
            assert reply.result.status == "scored"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_cli_refuses_a_config_without_assets(tmp_path, run_cli):
    path = tmp_path / "server.toml"
    path.write_text("[server]\nport = 0\n", encoding="utf-8")
    result = run_cli("serve", "--config", str(path))
    assert result.returncode == 2
    assert "error: assets:" in result.stderr and "nothing to serve" in result.stderr
