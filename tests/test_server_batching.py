"""Micro-batching on a real loopback server: coalesced calls score exactly like single calls,
a full queue answers RESOURCE_EXHAUSTED, a deadline that passes in the queue scores nothing."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from lineage_audit.client import Client
from lineage_audit.divergence import load_baseline
from lineage_audit.divergence.monitor import AssetMonitor, WindowPolicy
from lineage_audit.server import AssetConfig, ServerConfig, ServerThread
from lineage_audit.server.batching import Job
from server_fixtures import ENCODER, N, clean_rows, fit_small_baseline, shifted_rows


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    return fit_small_baseline(tmp_path_factory.mktemp("bl") / "baseline")


def _config(baseline_dir, **server) -> ServerConfig:
    return ServerConfig(
        assets={"news": AssetConfig(baseline_dir, backend="numpy")}, port=0, http_port=-1,
        **server,
    )  # fmt: skip


def _batches(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(clean_rows if i % 2 else shifted_rows)(rng, N) for i in range(count)]


def _largest_batch(server: ServerThread) -> float:
    """Most requests coalesced into one kernel call so far (from the server's metrics)."""
    registry = server.running.metrics.registry
    buckets = [
        (float(s.labels["le"]), s.value)
        for metric in registry.collect()
        if metric.name == "lineage_audit_batch_requests"
        for s in metric.samples
        if s.name.endswith("_bucket")
    ]
    total = max(count for _, count in buckets)
    return min(le for le, count in buckets if count == total)


def test_coalesced_scores_equal_single_scores(baseline_dir):
    batches = _batches(1, 24)
    local = AssetMonitor("news", load_baseline(baseline_dir), WindowPolicy(N), backend="numpy")
    expected = [local.evaluate(b, encoder_id=ENCODER) for b in batches]
    with ServerThread(_config(baseline_dir)) as server, Client(server.address) as client:
        with ThreadPoolExecutor(len(batches)) as pool:
            with _engine_blocked(server):  # every call queues up, then one kernel call
                calls = [pool.submit(client.score, "news", b, encoder_id=ENCODER) for b in batches]
                _wait_queued(server, len(batches))
            got = [c.result(60) for c in calls]
        sequential = [client.score("news", b, encoder_id=ENCODER) for b in batches[:4]]
        assert _largest_batch(server) >= len(batches)
    for want, have in zip(expected, got, strict=True):
        assert have.mmd2 == pytest.approx(want.mmd2, rel=1e-6, abs=1e-9)
        assert have.z == pytest.approx(want.z, abs=1e-6)
        assert have.p == pytest.approx(want.p, abs=1e-12)
        assert have.lambda_hat == pytest.approx(want.lambda_hat, rel=1e-5, abs=1e-9)
        assert have.mean_similarity == pytest.approx(want.mean_similarity, rel=1e-6)
    for want, have in zip(expected[:4], sequential, strict=True):
        assert have.mmd2 == pytest.approx(want.mmd2, rel=1e-6, abs=1e-9)


def test_coalesced_stream_windows_equal_single_windows(baseline_dir):
    """Each stream request is exactly one window, so each reply's window is its own rows."""
    streams = {seed: _batches(seed, 6) for seed in (2, 3, 4, 5)}
    local = AssetMonitor("news", load_baseline(baseline_dir), WindowPolicy(N), backend="numpy")
    with ServerThread(_config(baseline_dir, max_batch_wait_ms=100.0)) as server:

        def run(seed):
            with Client(server.address) as client:
                return list(client.stream("news", streams[seed], encoder_id=ENCODER))

        with ThreadPoolExecutor(len(streams)) as pool:
            with _engine_blocked(server):  # the first request of every stream queues up
                runs = {seed: pool.submit(run, seed) for seed in streams}
                _wait_queued(server, len(streams))
            replies = {seed: run.result(60) for seed, run in runs.items()}
        assert _largest_batch(server) > 1
    indices = []
    for seed, batches in streams.items():
        for rows, reply in zip(batches, replies[seed], strict=True):
            (window,) = reply.windows
            assert reply.pending_rows == 0
            want = local.evaluate(rows, encoder_id=ENCODER)
            assert window.mmd2 == pytest.approx(want.mmd2, rel=1e-6, abs=1e-9)
            assert window.end_row - window.start_row == N
            indices.append(window.window)
    assert sorted(indices) == list(range(len(indices)))  # every window once, none lost


def test_full_queue_is_resource_exhausted_and_the_server_keeps_serving(baseline_dir):
    config = _config(baseline_dir, max_queue_rows=2 * N, max_batch_rows=N)
    batches = _batches(6, 16)
    with ServerThread(config) as server, Client(server.address) as client:

        def call(rows):
            try:
                return client.score("news", rows, encoder_id=ENCODER)
            except grpc.RpcError as exc:
                return exc

        with ThreadPoolExecutor(len(batches)) as pool, _engine_blocked(server):
            calls = [pool.submit(call, rows) for rows in batches]
            _wait_settled(calls, queued=2)
        outcomes = [c.result(60) for c in calls]
        refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
        assert len(refused) == len(batches) - 2  # two fit in the queue (2 x N rows)
        assert {o.code() for o in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert "scoring queue of asset class 'news' is full" in refused[0].details()
        assert client.score("news", batches[0], encoder_id=ENCODER).status == "scored"


def _wait_queued(server: ServerThread, calls: int) -> None:
    """Until ``calls`` jobs wait in the asset's queue (the engine is held)."""
    batcher = server.running.batchers["news"]
    deadline = time.monotonic() + 60
    while len(batcher._queue) < calls:
        assert time.monotonic() < deadline, f"{len(batcher._queue)} of {calls} calls queued"
        time.sleep(0.005)


def _wait_settled(calls, *, queued: int) -> None:
    """Until all but ``queued`` calls have been answered (refused at once)."""
    deadline = time.monotonic() + 60
    while sum(c.done() for c in calls) < len(calls) - queued:
        assert time.monotonic() < deadline, "calls neither queued nor refused"
        time.sleep(0.005)


@contextlib.contextmanager
def _engine_blocked(server: ServerThread):
    """Hold the asset's batcher inside a job until the block ends (queued calls wait)."""
    release, entered = threading.Event(), threading.Event()

    def hold():
        entered.set()
        release.wait(60)

    async def submit():
        return await server.running.batchers["news"].submit(Job("call", call=hold))

    done = asyncio.run_coroutine_threadsafe(submit(), server.running_loop)
    assert entered.wait(60)
    try:
        yield
    finally:
        release.set()
        done.result(60)


def test_a_deadline_that_passes_in_the_queue_appends_nothing(baseline_dir):
    with ServerThread(_config(baseline_dir)) as server, Client(server.address) as client:
        rows = _batches(7, 1)[0]
        half = rows[: N // 2]
        first = next(client.stream("news", [half], encoder_id=ENCODER))
        assert first.pending_rows == N // 2
        with _engine_blocked(server):
            with pytest.raises(grpc.RpcError) as info:
                client.scoring.Score(_score_request(rows), timeout=0.2)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            stream = client.scoring.StreamScore(iter([_score_request(half)]), timeout=0.2)
            with pytest.raises(grpc.RpcError) as info:
                list(stream)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        after = next(client.stream("news", [half], encoder_id=ENCODER))
        # the expired stream request appended nothing: these rows complete the first window
        assert [w.end_row for w in after.windows] == [N] and after.pending_rows == 0


def _score_request(rows):
    from lineage_audit._generated.lineage_audit.v1 import scoring_pb2
    from lineage_audit.client import encode_embeddings

    return scoring_pb2.ScoreRequest(
        asset_class="news", embeddings=encode_embeddings(rows, encoder_id=ENCODER)
    )


def test_graceful_stop_finishes_queued_calls_and_refuses_new_ones(baseline_dir):
    server = ServerThread(_config(baseline_dir)).start()
    rows = _batches(8, 1)[0]
    with Client(server.address) as client, ThreadPoolExecutor(2) as pool:
        with _engine_blocked(server):
            queued = pool.submit(client.score, "news", rows, encoder_id=ENCODER)
            _wait_queued(server, 1)  # the call waits behind the held engine
            stopping = pool.submit(server.stop, 30)
            deadline = time.monotonic() + 60
            while server.running is not None and server.running.serving[0]:
                assert time.monotonic() < deadline, "the stop never began"
                time.sleep(0.005)
            with pytest.raises(grpc.RpcError) as info:
                client.score("news", rows, encoder_id=ENCODER)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert queued.result(60).status == "scored"  # drained, not dropped
        stopping.result(60)
