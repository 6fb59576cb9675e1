"""tlog-tiles export (docs §7, c2sp.org/tlog-tiles): layout, partial tiles, entry bundles."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest
from lineage_audit.ledger import CheckpointError, Ledger, RecordSpec, parse_checkpoint
from lineage_audit.ledger.tiles import _tiles, tile_index_path, tile_path

COUNT = 600  # two full level-0 tiles, a partial one of width 88, a level-1 tile of width 2


def test_index_paths() -> None:
    assert tile_index_path(0) == "000"
    assert tile_index_path(5) == "005"
    assert tile_index_path(999) == "999"
    assert tile_index_path(1000) == "x001/000"
    assert tile_index_path(1234067) == "x001/x234/067"
    assert tile_path(0, 1) == "tile/0/001"
    assert tile_path("entries", 2, 88) == "tile/entries/002.p/88"
    assert tile_path(3, 1234067, 17) == "tile/3/x001/x234/067.p/17"


def test_tile_set_matches_the_spec_example() -> None:
    tiles = _tiles(70_000)
    level0 = [t for t in tiles if t[0] == 0]
    assert len([t for t in level0 if t[2] == 256]) == 273
    assert (0, 273, 112) in level0
    assert [t for t in tiles if t[0] == 1] == [(1, 0, 256), (1, 1, 17)]
    assert [t for t in tiles if t[0] == 2] == [(2, 0, 1)]
    assert _tiles(256) == [(0, 0, 256), (1, 0, 1)]
    assert _tiles(0) == []


def _hashes(data: bytes) -> list[bytes]:
    assert len(data) % 32 == 0
    return [data[i : i + 32] for i in range(0, len(data), 32)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, keyring):
    base = tmp_path_factory.mktemp("tiles")
    with Ledger.open(base / "t.db", keyring) as ledger:
        ledger.append_many(
            [RecordSpec("record", "tile.test", "t", [], {"i": i}) for i in range(COUNT)]
        )
        ledger.checkpoint()
        result = ledger.export_tiles(base / "out")
        leaf_inputs = [e.leaf_input for e in ledger.entries()]
        envelopes = [e.envelope for e in ledger.entries()]
        root = ledger.root()
    return base / "out", result, leaf_inputs, envelopes, root


def test_layout(exported) -> None:
    out, result, _, _, _ = exported
    assert result.size == COUNT
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    tiles = [f for f in files if f.startswith("tile/")]
    assert tiles == sorted([
        "tile/0/000", "tile/0/001", "tile/0/002.p/88", "tile/1/000.p/2",
        "tile/entries/000", "tile/entries/001", "tile/entries/002.p/88",
    ])  # fmt: skip
    assert len([f for f in files if f.startswith("envelopes/")]) == COUNT
    assert "checkpoint" in files and not [f for f in files if f.endswith(".tmp")]
    assert sorted(result.files) == files
    assert (out / "tile/0/000").stat().st_size == 8192
    assert (out / "tile/0/002.p/88").stat().st_size == 88 * 32


def test_entry_bundles_parse_back_to_leaf_inputs(exported, helpers) -> None:
    out, _, leaf_inputs, envelopes, _ = exported
    parsed = []
    for name in ("000", "001", "002.p/88"):
        data = (out / "tile/entries" / name).read_bytes()
        pos, items = 0, []
        while pos < len(data):
            (length,) = struct.unpack(">H", data[pos : pos + 2])
            items.append(data[pos + 2 : pos + 2 + length])
            pos += 2 + length
        assert pos == len(data) and all(len(item) == 158 for item in items)
        level0 = _hashes((out / "tile/0" / name).read_bytes())
        assert [helpers.leaf_hash(item) for item in items] == level0
        parsed += items
    assert parsed == leaf_inputs
    assert (out / "envelopes/17.json").read_bytes() == envelopes[17]
    json.loads((out / "envelopes/599.json").read_bytes())


def test_root_from_tiles_equals_checkpoint_root(exported, helpers) -> None:
    out, _, _, _, root = exported
    checkpoint = parse_checkpoint((out / "checkpoint").read_text())
    assert checkpoint.size == COUNT and checkpoint.root == root
    full0 = [_hashes((out / "tile/0" / n).read_bytes()) for n in ("000", "001")]
    partial0 = _hashes((out / "tile/0/002.p/88").read_bytes())
    level1 = _hashes((out / "tile/1/000.p/2").read_bytes())
    # Each level-1 hash is the Merkle root of a full level-0 tile.
    assert level1 == [helpers.RefTree(tile).root(256) for tile in full0]
    # Root from the level-1 tile (two 256-leaf subtrees) and the partial level-0 tile.
    left = helpers.node(level1[0], level1[1])
    right = helpers.RefTree(partial0).root(88)
    assert helpers.node(left, right) == checkpoint.root
    leaves = [h for tile in full0 for h in tile] + partial0
    assert helpers.RefTree(leaves).root(COUNT) == base64.b64decode(
        (out / "checkpoint").read_text().split("\n")[2]
    )


def test_export_needs_a_checkpoint(ledger: Ledger, tmp_path: Path, db_path: Path, cli) -> None:
    ledger.append("record", "x", "y")
    with pytest.raises(CheckpointError, match="none stored yet"):
        ledger.export_tiles(tmp_path / "out")
    code, _, err = cli("ledger", "export-tiles", "--db", db_path, "-o", tmp_path / "out")
    assert code == 2 and err.startswith("error: checkpoint: none stored yet")
    ledger.checkpoint()
    code, out, _ = cli("ledger", "export-tiles", "--db", db_path, "-o", tmp_path / "out")
    assert code == 0 and "exported tree size 1" in out
    assert (tmp_path / "out/tile/0/000.p/1").stat().st_size == 32
