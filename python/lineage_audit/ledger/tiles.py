"""Export the log in the c2sp.org/tlog-tiles layout (docs §7) for any static web server.

``checkpoint``, ``tile/<L>/<N>[.p/<W>]`` (height 8, width 256), ``tile/entries/<N>[.p/<W>]``
(the 158-byte leaf inputs, each prefixed with a big-endian u16 length) and, beside the
tiles, ``envelopes/<seq>.json`` (the DSSE envelopes the leaf inputs commit to).
"""

from __future__ import annotations

import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError
from .store import LedgerStore, StoredCheckpoint

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TilesExport",
    "export_tiles",
    "tile_index_path",
    "tile_path",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
_U16 = struct.Struct(">H")


def tile_index_path(n: int) -> str:
    """``N`` as zero-padded 3-digit path elements, all but the last prefixed ``x``."""
    if n < 0:
        raise ValueError(f"tile index: must be non-negative, got {n}")
    path = f"{n % 1000:03d}"
    n //= 1000
    while n:
        path = f"x{n % 1000:03d}/{path}"
        n //= 1000
    return path


def tile_path(level: int | str, n: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``; ``level`` is an int or ``"entries"``."""
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width: must be in 1..{TILE_WIDTH}, got {width}")
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{tile_index_path(n)}{suffix}"


@dataclass(frozen=True)
class TilesExport:
    """What was written: the tree size, and every file path relative to the export root."""

    size: int
    files: tuple[str, ...]


def _write(root: Path, relative: str, data: bytes) -> None:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, target)


def _tiles(size: int) -> list[tuple[int, int, int]]:
    """``(level, n, width)`` of every tile of a tree of ``size`` leaves."""
    out = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)
        full, partial = divmod(hashes, TILE_WIDTH)
        out += [(level, n, TILE_WIDTH) for n in range(full)]
        if partial:
            out.append((level, full, partial))
        level += 1
    return out


def export_tiles(
    store: LedgerStore, checkpoint: StoredCheckpoint, directory: str | os.PathLike[str]
) -> TilesExport:
    """Write the tiles, entry bundles and envelopes of the tree at ``checkpoint``."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    size = checkpoint.size
    files: list[str] = []
    for level, n, width in _tiles(size):
        start = n * TILE_WIDTH
        hashes = store.node_range(TILE_HEIGHT * level, start, start + width)
        relative = tile_path(level, n, width)
        _write(root, relative, b"".join(hashes))
        files.append(relative)
        if level == 0:
            entries = list(store.iter_entries(start, start + width))
            if [e.seq for e in entries] != list(range(start, start + width)):
                raise StoreError(f"entries [{start}, {start + width}) incomplete in the store")
            bundle = b"".join(_U16.pack(len(e.leaf_input)) + e.leaf_input for e in entries)
            relative = tile_path("entries", n, width)
            _write(root, relative, bundle)
            files.append(relative)
            for entry in entries:
                relative = f"envelopes/{entry.seq}.json"
                _write(root, relative, entry.envelope)
                files.append(relative)
    _write(root, "checkpoint", checkpoint.note.encode("utf-8"))
    files.append("checkpoint")
    return TilesExport(size, tuple(files))
