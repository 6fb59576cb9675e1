"""KeOps backend (pykeops): kernel sums as compiled reductions that never build a kernel block.

On CPU it is the fastest backend at low dimension (up to D=24 here; ``select.KEOPS_CPU_MAX_DIM``),
and it needs no BLAS. KeOps compiles every reduction with the system C++ compiler the first
time it meets it (seconds; cached on disk), and the same formulas run on CUDA with
``device="cuda"`` (written, untested here: no GPU).

Two choices make the CPU reductions fast (measured in benches/bench_divergence.py; see
docs/tier3.md, "KeOps on the CPU"):

- Compiler flags (:data:`CPU_CXXFLAGS`). KeOps compiles with ``-O3`` alone, which leaves
  ``exp`` scalar. With these flags the loop over reference rows calls glibc's vector
  ``expf``.
- Column layout at low dimension. A reference row of D floats is one KeOps variable, so the
  vectorised loop must transpose 16 rows in registers (permutes) for each 16 kernel values.
  Below :data:`COLUMN_MAX_DIM` each coordinate is passed as its own variable instead: one
  contiguous column, loaded directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import platform
import sys
from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from .base import DEFAULT_BLOCK_ROWS, KernelBackend

__all__ = ["COLUMN_MAX_DIM", "CPU_CXXFLAGS", "KeOpsBackend", "KeOpsOperand"]

# Why each flag:
# -march=native: AVX2/AVX-512 on the machine that compiles. KeOps compiles where it runs, and
#   the host's CPU id is part of the flags (see _host_tag), hence of KeOps' cache key, so a
#   home directory shared between different CPUs never loads a binary built for another.
# -include math.h: KeOps calls exp() unqualified on floats; libstdc++'s math.h brings the
#   float overloads into the global namespace, so it is expf, not exp on doubles.
# -D__FAST_MATH__: glibc declares its vector math (libmvec, at most 4 ulp) only under this
#   macro. We define it instead of passing -ffast-math because gcc then links crtfastmath.o
#   into the module, which turns on flush-to-zero for the whole Python process once loaded
#   (tests/test_divergence_backends.py checks that subnormals survive).
# -fno-math-errno: vector calls set no errno.
# -fassociative-math -fno-signed-zeros -fno-trapping-math: lets the compiler split the float64
#   sum over reference rows into vector lanes (a reassociation).
CPU_CXXFLAGS = (
    "-march=native -include math.h -D__FAST_MATH__ -fno-math-errno"
    " -fassociative-math -fno-signed-zeros -fno-trapping-math"
)
# Replaces CPU_CXXFLAGS (an empty value keeps KeOps' own flags), e.g. for a compiler that
# refuses one of them.
CXXFLAGS_ENV = "LINEAGE_AUDIT_KEOPS_CXXFLAGS"

# Up to this dimension the reference goes to KeOps as one variable per coordinate. Measured
# here (M=20,000, n=1,024, 2 threads): 0.66 vs 1.2 ns per kernel value at D=16 for columns vs
# rows; the column formula grows with D, and compile time with it.
COLUMN_MAX_DIM = 64


def _host_tag() -> str:
    """A short digest of this CPU's model and feature flags (what -march=native compiles for)."""
    identity = platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            lines = [
                line for line in cpuinfo if line.startswith(("model name", "flags", "Features"))
            ]
        identity += "".join(sorted(set(lines)))
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _wanted_cxxflags() -> str:
    flags = os.environ.get(CXXFLAGS_ENV, CPU_CXXFLAGS)
    return f"{flags} -DLINEAGE_AUDIT_KEOPS_HOST={_host_tag()}" if flags.strip() else ""


@contextlib.contextmanager
def _cxxflags(extra: str):
    # keopscore reads CXXFLAGS once, when it is first imported.
    before = os.environ.get("CXXFLAGS")
    if extra:
        os.environ["CXXFLAGS"] = f"{before or ''} {extra}".strip()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CXXFLAGS", None)
        else:
            os.environ["CXXFLAGS"] = before


def _import_keops():
    """``(pykeops, Genred, flags)``; ``flags`` are the CPU compiler flags KeOps really uses."""
    first_import = "keopscore" not in sys.modules
    # pykeops prints a CUDA warning to stdout on import on CPU-only hosts: keep CLI output clean.
    with (
        contextlib.redirect_stdout(io.StringIO()),
        _cxxflags(_wanted_cxxflags() if first_import else ""),
    ):
        try:
            import keopscore
            import pykeops
            from pykeops.numpy import Genred
        except ImportError:
            raise BackendUnavailable(
                "backend keops needs the pykeops package (pip install 'lineage-audit[keops]')"
            ) from None
    pykeops.set_verbose(False)
    return pykeops, Genred, keopscore.config.get_cpp_flags()


class KeOpsOperand:
    """Rows on the host and, in the column layout, one contiguous array per coordinate.

    The columns are made the first time the operand is a reference side (the j variables):
    a window scored against a reference is only ever the row side and never needs them."""

    def __init__(self, rows: np.ndarray, column_layout: bool, columns: Any = None) -> None:
        self.rows = rows  # (n, D) float32, C order
        self.column_layout = column_layout
        self._columns = columns  # (D, n) float32 rows contiguous, once made

    @property
    def columns(self) -> np.ndarray | None:
        if self.column_layout and self._columns is None:
            self._columns = np.ascontiguousarray(self.rows.T)
        return self._columns

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, rows: slice) -> KeOpsOperand:
        # Each coordinate's slice stays one contiguous run: no copy.
        columns = None if self._columns is None else self._columns[:, rows]
        return KeOpsOperand(self.rows[rows], self.column_layout, columns)


class KeOpsBackend(KernelBackend):
    """``sum_j exp(-gamma * ||y_i - x_j||^2)`` as one KeOps reduction, float64 accumulator."""

    name = "keops"

    def __init__(self, *, block_rows: int = DEFAULT_BLOCK_ROWS, device: str = "cpu") -> None:
        pykeops, self._genred, self.compiler_flags = _import_keops()
        if device.startswith("cuda"):
            if not pykeops.config.gpu_available:
                raise BackendUnavailable(f"backend keops: device {device!r} but no CUDA for KeOps")
            self._keops_backend = "GPU"
        elif device == "cpu":
            self._keops_backend = "CPU"
        else:
            raise BackendUnavailable(f"backend keops: unknown device {device!r}")
        super().__init__(block_rows=block_rows, device=device)
        # On a GPU KeOps stages reference rows through shared memory: rows are its own layout.
        self.column_max_dim = COLUMN_MAX_DIM if self._keops_backend == "CPU" else 0
        self._routines: dict[tuple[int, bool], Any] = {}

    def uses_columns(self, dimension: int) -> bool:
        return dimension <= self.column_max_dim

    def to_device(self, array: Any) -> KeOpsOperand:
        # KeOps moves host arrays to the GPU itself; keep host float32 arrays.
        if isinstance(array, KeOpsOperand):
            return array
        rows = np.ascontiguousarray(array, dtype=np.float32)
        return KeOpsOperand(rows, self.uses_columns(rows.shape[1]))

    def prepare(self, dimension: int) -> None:
        # One tiny reduction compiles (first time on this host, seconds) or loads the
        # dimension's module: a server pays it when it loads a baseline, not at a window.
        probe = np.zeros((2, dimension), dtype=np.float32)
        probe[:, 0] = 1.0
        self.cross_row_means(probe, probe, 1.0)

    def _routine(self, dimension: int, columns: bool) -> Any:
        key = (dimension, columns)
        if key not in self._routines:
            self._routines[key] = self._compile(dimension, columns)
        return self._routines[key]

    def _compile(self, dimension: int, columns: bool) -> Any:
        if columns:
            aliases = [f"y = Vi(0, {dimension})"]
            aliases += [f"x{k} = Vj({k + 1}, 1)" for k in range(dimension)]
            aliases.append(f"g = Pm({dimension + 1}, 1)")
            squares = " + ".join(f"Square(Elem(y, {k}) - x{k})" for k in range(dimension))
            formula = f"Exp(-g * ({squares}))"
        else:
            aliases = [f"y = Vi(0, {dimension})", f"x = Vj(1, {dimension})", "g = Pm(2, 1)"]
            formula = "Exp(-g * SqDist(y, x))"
        # direct_sum: KeOps' block_sum keeps a periodic flush in the loop that stops the CPU
        # compiler vectorising it; with a float64 accumulator the plain sum is accurate.
        scheme = "direct_sum" if self._keops_backend == "CPU" else "auto"
        with contextlib.redirect_stdout(io.StringIO()):
            return self._genred(
                formula, aliases, reduction_op="Sum", axis=1, dtype_acc="float64",
                sum_scheme=scheme,
            )  # fmt: skip

    def _row_sums(self, y: np.ndarray, x: KeOpsOperand, gamma: float) -> np.ndarray:
        g = np.array([gamma], dtype=np.float32)
        columns = x.columns is not None
        dimension = x.rows.shape[1]
        first_call = (dimension, columns) not in self._routines
        routine = self._routine(dimension, columns)
        operands = [c.reshape(-1, 1) for c in x.columns] if columns else [x.rows]
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # first call: compiler chatter
                sums = routine(y, *operands, g, backend=self._keops_backend)
        except Exception as error:
            if not first_call:
                raise
            del self._routines[(dimension, columns)]
            raise BackendUnavailable(
                f"backend keops: its D={dimension} reduction did not compile or load "
                f"({type(error).__name__}: {str(error).strip().splitlines()[0][:200]}); "
                f"flags {self.compiler_flags.strip()!r}. Set {CXXFLAGS_ENV}='' for KeOps' "
                "own flags, or choose backend numpy"
            ) from error
        return np.asarray(sums[:, 0], dtype=np.float64)

    def cross_row_means(self, y: Any, x: Any, gamma: float) -> np.ndarray:
        y, x = self.to_device(y), self.to_device(x)
        out = np.empty(len(y), dtype=np.float64)
        for i in self.blocks(len(y)):
            out[i : i + self.block_rows] = self._row_sums(y.rows[i : i + self.block_rows], x, gamma)
        return out / len(x)

    def pair_sum(self, y: Any, gamma: float) -> float:
        y = self.to_device(y)
        total = sum(
            float(self._row_sums(y.rows[i : i + self.block_rows], y, gamma).sum())
            for i in self.blocks(len(y))
        )
        return total - len(y)  # the diagonal: exp(0) = 1 exactly
