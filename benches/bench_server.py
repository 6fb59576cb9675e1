"""Load benchmark of the gRPC scoring server (`lineage-audit serve`) on loopback.

One run, one JSON line: C in {1, 8, 32, 128} concurrent clients send unary ``Score`` calls
with 256 x 768 float32 batches (each a one-off window against a 768-D baseline) to a real
server process, bounded in time and in requests per case: throughput (embeddings/s), p50/p99
latency, errors by status code. In the same run, on the same data and baseline: the
in-process engine (``AssetMonitor.evaluate``, one window per call, one caller) and the server
with micro-batching off. The kernel's GFLOP/s is quoted against numpy SGEMM measured here.
Then the window stream: C in {1, 8} concurrent ``StreamScore`` calls on one asset class
(windows of one batch), by a server with a ``series_dir`` (each window's part file and the
row journal synced before the reply: durable) and by one without (in memory).

The load generator is grpc.aio in this process, so it shares the machine's cores with the
server; the comparison with the in-process engine charges the server for that.

    python benches/bench_server.py                     # the README figures (M = 20,000)
    python benches/bench_server.py --reference 5000    # a smaller reference: less kernel
    python benches/bench_server.py --quick    # smoke size (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine
from bench_divergence import sgemm_gflops
from lineage_audit._generated.lineage_audit.v1 import scoring_pb2, scoring_pb2_grpc
from lineage_audit.client import encode_embeddings
from lineage_audit.divergence import BaselineConfig, fit_baseline, save_baseline
from lineage_audit.divergence.monitor import AssetMonitor, WindowPolicy
from lineage_audit.server.process import ServerProcess

FULL = {"dim": 768, "batch": 256, "reference": 20_000, "clients": (1, 8, 32, 128),
        "stream_clients": (1, 8), "seconds": 8.0, "max_requests": 4000,
        "null_windows": 2000}  # fmt: skip
QUICK = {"dim": 64, "batch": 64, "reference": 2_000, "clients": (1, 8), "stream_clients": (1, 8),
         "seconds": 0.5, "max_requests": 200, "null_windows": 1000}  # fmt: skip


def _data(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    """Embedding-like rows: a few topics plus noise (the engine L2-normalises them)."""
    topics = np.random.default_rng(7).standard_normal((12, dim)).astype(np.float32)
    picks = rng.integers(0, len(topics), rows)
    return topics[picks] + 0.8 * rng.standard_normal((rows, dim), dtype=np.float32)


def _fit(folder: Path, p: dict[str, Any], rng) -> tuple[Path, float, int]:
    started = time.perf_counter()
    rows = int(p["reference"] / 0.7) + 1  # the fit keeps 70% as reference, 30% as the pool
    config = BaselineConfig(
        window_sizes=(p["batch"],), null_windows=p["null_windows"], arl_windows=200,
        encoder_id="bench-encoder", asset_class="bench",
    )  # fmt: skip
    baseline = fit_baseline(_data(rng, rows, p["dim"]), config=config, backend="numpy")
    save_baseline(baseline, folder / "baseline")
    return folder / "baseline", time.perf_counter() - started, len(baseline.reference)


def _in_process(path: Path, batches: list[np.ndarray], seconds: float) -> dict[str, float]:
    from lineage_audit.divergence import load_baseline

    asset = AssetMonitor("bench", load_baseline(path), WindowPolicy(len(batches[0])))
    asset.evaluate(batches[0], encoder_id="bench-encoder")  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done < 3:
        asset.evaluate(batches[done % len(batches)], encoder_id="bench-encoder")
        done += 1
    elapsed = time.perf_counter() - started
    rows = len(batches[0])
    return {"embeddings_per_s": done * rows / elapsed, "window_ms": 1000 * elapsed / done,
            "backend": asset.scorer.backend.label}  # fmt: skip


async def _load(address: str, requests: list, clients: int, seconds: float, limit: int):
    """``clients`` concurrent callers until ``seconds`` pass or ``limit`` calls were made."""
    options = [("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        for request in requests[:2]:  # warm-up: connection, first kernel call
            await stub.Score(request, timeout=120)
        loop = asyncio.get_running_loop()
        latencies: list[float] = []
        errors: collections.Counter[str] = collections.Counter()
        issued = [0]
        stop_at = loop.time() + seconds

        async def caller(k: int) -> None:
            while loop.time() < stop_at and issued[0] < limit:
                request = requests[(issued[0] + k) % len(requests)]
                issued[0] += 1
                sent = time.perf_counter()
                try:
                    await stub.Score(request, timeout=120)
                    latencies.append(time.perf_counter() - sent)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def _case(address: str, requests: list, rows: int, clients: int, p: dict) -> dict[str, Any]:
    latencies, errors, elapsed = asyncio.run(
        _load(address, requests, clients, p["seconds"], p["max_requests"])
    )
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": dict(errors),
        "embeddings_per_s": round(len(latencies) * rows / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


async def _stream_load(address: str, requests: list, clients: int, seconds: float, limit: int):
    """``clients`` concurrent ``StreamScore`` calls, each sending batches until ``seconds``
    pass or ``limit`` replies came in all; returns (replies, errors, elapsed)."""
    options = [("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        async for _ in stub.StreamScore(iter(requests[:1]), timeout=120):  # warm-up
            pass
        loop = asyncio.get_running_loop()
        replies = [0]
        errors: collections.Counter[str] = collections.Counter()
        stop_at = loop.time() + seconds

        async def caller(k: int) -> None:
            async def batches():
                i = 0
                while loop.time() < stop_at and replies[0] < limit:
                    yield requests[(i + k) % len(requests)]
                    i += 1

            try:
                async for _ in stub.StreamScore(batches(), timeout=120):
                    replies[0] += 1
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    return replies[0], errors, elapsed


def _server_config(folder: Path, name: str, path: Path, p: dict, extra: str) -> Path:
    """A server TOML serving the baseline as asset class ``bench`` (``extra``: [server] keys)."""
    config = folder / f"server-{name}.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = 0\nhttp_port = -1\nworkers = 2\n{extra}\n'
        f'[assets.bench]\nbaseline = "{path}"\nwindow = {p["batch"]}\n',
        encoding="utf-8",
    )
    return config


def _requests(batches) -> list:
    return [
        scoring_pb2.ScoreRequest(
            asset_class="bench", embeddings=encode_embeddings(b, encoder_id="bench-encoder")
        )
        for b in batches
    ]


def _stream_runs(path: Path, batches, p: dict, folder: Path, durable: bool) -> list[dict]:
    """The window stream over gRPC (windows of one batch): ``durable``, with a series_dir
    (each window's part file and the row journal synced before the reply), or in memory."""
    tag = "durable" if durable else "in-memory"
    series = f'series_dir = "{folder / f"series-{tag}"}"\n' if durable else ""
    config = _server_config(folder, f"stream-{tag}", path, p, series)
    requests = _requests(batches)
    out = []
    with ServerProcess(config, log=folder / f"server-{tag}.log") as server:
        for clients in p["stream_clients"]:
            replies, errors, elapsed = asyncio.run(
                _stream_load(server.address, requests, clients, p["seconds"], p["max_requests"])
            )
            out.append({"clients": clients, "replies": replies, "errors": dict(errors),
                        "embeddings_per_s": round(replies * p["batch"] / elapsed, 1)})  # fmt: skip
    return out


def _server_runs(path: Path, batches, p: dict, folder: Path, batching: bool) -> list[dict]:
    name = "on" if batching else "off"
    config = _server_config(folder, name, path, p, f"batching = {str(batching).lower()}\n")
    requests = _requests(batches)
    with ServerProcess(config, log=folder / "server.log") as server:
        return [_case(server.address, requests, p["batch"], c, p) for c in p["clients"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size (CI)")
    parser.add_argument("--seconds", type=float, help="seconds per case")
    parser.add_argument(
        "--reference", type=int, help="reference rows of the baseline (default 20,000)"
    )
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    p = dict(QUICK if args.quick else FULL)
    if args.seconds:
        p["seconds"] = args.seconds
    if args.reference:
        p["reference"] = args.reference
    rng = np.random.default_rng(args.seed)
    env = machine.environment()
    sgemm = sgemm_gflops(repeats=3, size=1024 if args.quick else 4096)
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        folder = Path(tmp)
        path, fit_s, reference = _fit(folder, p, rng)
        batches = [_data(rng, p["batch"], p["dim"]) for _ in range(16)]
        engine = _in_process(path, batches, max(p["seconds"], 1.0))
        on = _server_runs(path, batches, p, folder, batching=True)
        off = _server_runs(path, batches, p, folder, batching=False)
        stream_bare = _stream_runs(path, batches, p, folder, durable=False)
        stream_durable = _stream_runs(path, batches, p, folder, durable=True)
    flops = 2.0 * p["batch"] * (reference + p["batch"]) * p["dim"]  # cross + within terms
    kernel_gflops = flops * engine["embeddings_per_s"] / p["batch"] / 1e9
    pick = 32 if 32 in p["clients"] else p["clients"][-1]
    at = next(r for r in on if r["clients"] == pick)
    at_off = next(r for r in off if r["clients"] == pick)
    machine.emit({
        "bench": "server",
        "quick": args.quick,
        "seed": args.seed,
        "environment": env,
        "dimension": p["dim"],
        "batch_rows": p["batch"],
        "reference_rows": reference,
        "fit_seconds": round(fit_s, 2),
        "sgemm_gflops": round(sgemm, 1),
        "in_process": {k: round(v, 2) if isinstance(v, float) else v for k, v in engine.items()},
        "in_process_kernel_gflops": round(kernel_gflops, 1),
        "fraction_of_sgemm": round(kernel_gflops / sgemm, 3),
        "batching_on": on,
        "batching_off": off,
        "compared_at_clients": pick,
        "ratio_vs_in_process": round(at["embeddings_per_s"] / engine["embeddings_per_s"], 3),
        "ratio_batching_on_vs_off": round(at["embeddings_per_s"] / at_off["embeddings_per_s"], 3),
        "p99_over_p50": round(at["p99_ms"] / at["p50_ms"], 2),
        "stream_in_memory": stream_bare,
        "stream_durable": stream_durable,
        # At the most stream clients: durable (series + row journal synced before each
        # reply) over in memory (no series_dir), the same server otherwise.
        "ratio_stream_durable_vs_in_memory": round(
            stream_durable[-1]["embeddings_per_s"] / stream_bare[-1]["embeddings_per_s"], 3
        ),
    })  # fmt: skip


if __name__ == "__main__":
    main()
