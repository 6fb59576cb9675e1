"""Machine limits measured in the same run as each benchmark (DESIGN.md §8).

Every figure a benchmark prints is quoted against one of these bounds, so a result can be
judged on any machine: SHA-256 compressions per second (OpenSSL, which uses SHA-NI where the
CPU has it) and signing/verification rates of the `cryptography` package.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable

SHA256_BLOCK = 64


def cores() -> int:
    """Cores this process may run on (what rayon will use)."""
    return len(os.sched_getaffinity(0))


def best_rate(fn: Callable[[], int], repeats: int = 5) -> float:
    """Best-of-N rate of `fn`, which does some work and returns how many units it did."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        units = fn()
        elapsed = time.perf_counter() - start
        best = max(best, units / elapsed)
    return best


def sha256_compressions_per_second_one_core() -> float:
    """Bulk SHA-256 throughput on one core, in 64-byte compression-function calls per second."""
    buf = bytes(16 * 1024 * 1024)
    return best_rate(lambda: (hashlib.sha256(buf).digest(), len(buf) // SHA256_BLOCK)[1])


def sha256_compressions_per_second_all_cores() -> float:
    """Bulk SHA-256 throughput with one OpenSSL stream per core, all at once (hashlib drops
    the GIL for large buffers). Less than cores() times the one-core rate where the cores
    share execution units (SMT siblings) or other processes are running."""
    buf = bytes(16 * 1024 * 1024)
    n = cores()

    def run() -> int:
        threads = [
            threading.Thread(target=lambda: [hashlib.sha256(buf).digest() for _ in range(2)])
            for _ in range(n)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return n * 2 * len(buf) // SHA256_BLOCK

    return best_rate(run)


def sha256_blocks(message_len: int) -> int:
    """Compression calls needed to hash a message of this length (with SHA-256 padding)."""
    return (message_len + 1 + 8 + SHA256_BLOCK - 1) // SHA256_BLOCK


def environment() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cores": cores(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        # Other load while the benchmark ran (the 1-minute average at its start).
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def emit(result: dict[str, object]) -> None:
    """Print the benchmark's one JSON line and flush (benchmarks are read by scripts)."""
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
