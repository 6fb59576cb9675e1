"""Human-written text every machine has with no download: the Python standard library's own
documentation (the reference-manual topics of ``pydoc_data`` and the docstrings of the stdlib's
source files, read with ``ast``; nothing is imported).

It stands in for human-written news in the ATLAS-FX replay (no news corpus ships offline) and
is the human side of the real-text tests of Tiers 3 and 4. Passages are deduplicated,
whitespace-normalised prose of 20-80 words, ordered by content hash so that any prefix is a
well-mixed sample.
"""

from __future__ import annotations

import ast
import hashlib
import re
import sysconfig
from collections.abc import Iterator
from functools import cache
from pathlib import Path

__all__ = ["MAX_WORDS", "MIN_WORDS", "PROMPT_WORDS", "human_passages", "prompt_of"]

MIN_WORDS, MAX_WORDS, PACK_WORDS = 20, 80, 60
PROMPT_WORDS = 12
# Whole stdlib folders that are tests, demos or vendored code rather than documentation.
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "__pycache__"}
_UNDERLINE = re.compile(r"^\s*([*=~^-])\1{2,}\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
# A plain word, maybe quoted or punctuated (\u2019 is the typographic apostrophe).
_WORD = re.compile("^[(\"'`]?[A-Za-z][a-z'\u2019-]*[)\"'`]?[.,;:!?]?$")


# --- human passages -------------------------------------------------------------------------


def _is_prose(paragraph: str) -> bool:
    """Reject code, grammar, tables and doctests: keep paragraphs made mostly of plain words."""
    lines = [line for line in paragraph.splitlines() if line.strip()]
    if not lines or any(line.startswith(("    ", "\t", ">>>", "...")) for line in lines):
        return False
    if "::=" in paragraph or "|" in paragraph:
        return False
    words = paragraph.split()
    return sum(bool(_WORD.match(w)) for w in words) >= 0.7 * len(words)


def _paragraphs(text: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", text):
        # Section titles in the topics are underlined; drop the title and the underline.
        lines = block.splitlines()
        if any(_UNDERLINE.match(line) for line in lines):
            continue
        if _is_prose(block):
            yield " ".join(block.split())


def _passages(paragraph: str) -> Iterator[str]:
    """A paragraph of 20-80 words as is; a longer one packed into groups of whole sentences
    of at most 60 words (a lone sentence past 80 words is dropped)."""
    if len(paragraph.split()) <= MAX_WORDS:
        groups = [paragraph]
    else:
        groups, group, count = [], [], 0
        for sentence in _SENTENCE_END.split(paragraph):
            words = len(sentence.split())
            if group and count + words > PACK_WORDS:
                groups.append(" ".join(group))
                group, count = [], 0
            group.append(sentence)
            count += words
        groups.append(" ".join(group))
    yield from (g for g in groups if MIN_WORDS <= len(g.split()) <= MAX_WORDS)


def _pydoc_texts() -> Iterator[str]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield topics[key]


def _docstring_texts() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part in _SKIP_DIRS or part.startswith("test") for part in parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue  # a stray non-source file; it is not documentation anyway
        for node in ast.walk(tree):
            documented = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
            if isinstance(node, documented) and (doc := ast.get_docstring(node)):
                yield doc


@cache
def _all_human_passages() -> tuple[str, ...]:
    seen: set[str] = set()
    for text in (*_pydoc_texts(), *_docstring_texts()):
        for paragraph in _paragraphs(text):
            seen.update(_passages(paragraph))
    # Ordered by content hash: deterministic, and any prefix is a well-mixed sample of all
    # sources and topics (alphabetical order would make a prefix one module's vocabulary).
    return tuple(sorted(seen, key=lambda p: hashlib.sha256(p.encode()).digest()))


def human_passages(limit: int | None = None) -> list[str]:
    """Deduplicated, whitespace-normalised human-written passages of 20-80 words."""
    passages = _all_human_passages()
    if limit is not None and limit > len(passages):
        raise ValueError(f"asked for {limit} human passages, only {len(passages)} exist")
    return list(passages[:limit])


def prompt_of(passage: str) -> str:
    """The first :data:`PROMPT_WORDS` words of a passage (what a generator is asked to continue)."""
    return " ".join(passage.split()[:PROMPT_WORDS])
