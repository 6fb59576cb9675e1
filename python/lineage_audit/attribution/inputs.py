"""Text input of the batch jobs: Parquet or JSON Lines, streamed in row order.

A row is one text plus an id: the ``id`` column when the file has one (strings or integers,
unique), else the row's position. Rows are numbered from 0 in file order (JSONL: blank lines
are skipped and not counted). :meth:`TextSource.validate` reads the whole file once and
refuses, naming the row and column, an empty or non-string text, a missing column, or a
duplicate id — before any scoring starts or anything is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..divergence.inputs import file_sha256
from .errors import InputError

__all__ = ["SUFFIXES", "TextRow", "TextSource", "file_sha256"]

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
READ_ROWS = 4096


@dataclass(frozen=True)
class TextRow:
    row: int  # position in the file, from 0
    id: str
    text: str


@dataclass(frozen=True)
class TextSource:
    """A Parquet or JSONL file of texts; ``id_column=None`` uses ``id`` if present."""

    path: Path
    text_column: str = "text"
    id_column: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if not self.path.is_file():
            raise InputError("input", "file not found", str(self.path))
        if self.path.suffix.lower() not in SUFFIXES:
            raise InputError(
                "input", f"expected one of {', '.join(sorted(SUFFIXES))}", self.path.name
            )

    @property
    def kind(self) -> str:
        return SUFFIXES[self.path.suffix.lower()]

    def sha256(self) -> str:
        return file_sha256(self.path)

    # --- reading ---------------------------------------------------------------------------

    def _id_column(self, names: list[str]) -> str | None:
        if self.id_column is not None:
            if self.id_column not in names:
                raise InputError(
                    "--id-column", f"no such column in {self.path.name}", self.id_column
                )
            return self.id_column
        return "id" if "id" in names else None

    def _check(self, row: int, where: str, text: object, ident: object) -> TextRow:
        if not isinstance(text, str):
            raise InputError(
                f"{where}.{self.text_column}",
                f"expected a string, got {type(text).__name__}",
                text,
            )
        if not text.strip():
            raise InputError(f"{where}.{self.text_column}", "empty text: nothing to score", text)
        if ident is None:
            ident = row
        if isinstance(ident, bool) or not isinstance(ident, str | int):
            raise InputError(f"{where}.id", "expected a string or integer id", ident)
        return TextRow(row, str(ident), text)

    def rows(self) -> Iterator[TextRow]:
        """Every row, in order, checked."""
        if self.kind == "jsonl":
            yield from self._jsonl_rows()
        else:
            yield from self._parquet_rows()

    def _jsonl_rows(self) -> Iterator[TextRow]:
        row = 0
        id_column = self.id_column
        with self.path.open("r", encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{self.path.name} line {line_number}"
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise InputError(where, f"not valid JSON ({exc})") from None
                if not isinstance(obj, dict):
                    raise InputError(where, "expected a JSON object per line", obj)
                if self.text_column not in obj:
                    raise InputError(f"{where}.{self.text_column}", "missing")
                if id_column is not None and id_column not in obj:
                    raise InputError(f"{where}.{id_column}", "missing")
                ident = obj.get(id_column if id_column is not None else "id")
                yield self._check(row, where, obj[self.text_column], ident)
                row += 1

    def _parquet_rows(self) -> Iterator[TextRow]:
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise InputError(
                "input", f"not a readable Parquet file ({exc})", str(self.path)
            ) from None
        names = handle.schema_arrow.names
        if self.text_column not in names:
            raise InputError(
                "--text-column",
                f"no such column in {self.path.name} (has {names})",
                self.text_column,
            )
        id_column = self._id_column(names)
        columns = [self.text_column] + ([id_column] if id_column else [])
        row = 0
        for batch in handle.iter_batches(batch_size=READ_ROWS, columns=columns):
            texts = batch.column(self.text_column).to_pylist()
            ids = batch.column(id_column).to_pylist() if id_column else [None] * len(texts)
            for text, ident in zip(texts, ids, strict=True):
                if id_column is not None and ident is None:
                    raise InputError(f"{self.path.name} row {row}.{id_column}", "null id")
                yield self._check(row, f"{self.path.name} row {row}", text, ident)
                row += 1

    def validate(self) -> int:
        """Read every row once (texts and ids checked, ids unique); returns the row count."""
        seen: dict[str, int] = {}
        count = 0
        for item in self.rows():
            if item.id in seen:
                raise InputError(
                    f"{self.path.name} row {item.row}.id",
                    f"duplicate id (also row {seen[item.id]})",
                    item.id,
                )
            seen[item.id] = item.row
            count += 1
        if count == 0:
            raise InputError("input", "no rows: nothing to score", str(self.path))
        return count

    def texts(self) -> list[str]:
        """Every text, in order (for inputs that fit in memory, e.g. a reference set)."""
        return [item.text for item in self.rows()]
