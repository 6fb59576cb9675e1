"""The lineage graph as SVG: datasets and jobs by name, left (sources) to right.

Opaque sources (Tier 1 confidence <= 0.3) are drawn dashed red, convergence points orange,
models purple, and the edges of every re-entry path thick red. Columns are longest-path ranks
over the edges that go forward in the order names first appeared (a re-entry is a cycle at
name level; its closing edge points back and is drawn as a loop); a legend explains the
colours.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from itertools import pairwise

from .findings import Convergence, ReEntry
from .graph import DatasetKey, LineageGraph

__all__ = ["render_svg"]

NODE_H, GAP_Y, GAP_X, CHAR_W, PAD = 30, 16, 70, 7.2, 12
COLOURS = {
    "dataset": ("#eef4fb", "#4a78b5"),
    "job": ("#f4f4f4", "#888888"),
    "opaque": ("#fdecec", "#c62828"),
    "convergence": ("#fff1dc", "#e08a00"),
    "model": ("#f1e8fb", "#7b3fbf"),
}


def _edges(graph: LineageGraph) -> set[tuple[str, str]]:
    edges = set()
    for run in graph.runs.values():
        if run.job is None:
            continue
        job = f"job:{run.job[0]}:{run.job[1]}"
        edges.update((f"dataset:{v[1]}:{v[2]}", job) for v in run.inputs)
        edges.update((job, f"dataset:{v[1]}:{v[2]}") for v in run.outputs)
    return edges


def _first_seen(graph: LineageGraph) -> dict[str, int]:
    """Order in which names first appear in the events (runs in arrival order)."""
    order: dict[str, int] = {}
    for run in graph.runs.values():
        ids = [f"dataset:{v[1]}:{v[2]}" for v in sorted(run.inputs)]
        if run.job is not None:
            ids.append(f"job:{run.job[0]}:{run.job[1]}")
        ids += [f"dataset:{v[1]}:{v[2]}" for v in sorted(run.outputs)]
        for node in ids:
            order.setdefault(node, len(order))
    return order


def _acyclic(order: dict[str, int], edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The edges that go forward in first-seen order: lineage flows forward in time, and the
    edge that closes a loop (a re-entry) points back to a name seen earlier."""
    return {(a, b) for a, b in edges if order.get(a, 0) < order.get(b, 0)}


def _layers(nodes: list[str], edges, order: dict[str, int]) -> dict[str, int]:
    dag = _acyclic(order, edges)
    pred = defaultdict(list)
    for a, b in dag:
        pred[b].append(a)
    rank: dict[str, int] = {}

    def depth(node: str) -> int:
        stack, order = [node], []
        while stack:  # iterative post-order (graphs can be deep)
            n = stack.pop()
            if n in rank:
                continue
            order.append(n)
            stack.extend(p for p in pred[n] if p not in rank)
        for n in reversed(order):
            rank[n] = 1 + max((rank.get(p, 0) for p in pred[n]), default=-1)
        return rank[node]

    for node in nodes:
        depth(node)
    return rank


def _label(node: str) -> str:
    kind, _, rest = node.partition(":")
    return rest if kind == "dataset" else rest.split(":", 1)[-1]


def render_svg(
    graph: LineageGraph,
    convergences: list[Convergence],
    reentries: list[ReEntry],
    confidence: dict[DatasetKey, float],
    *,
    opaque: set[DatasetKey] = frozenset(),
) -> str:
    edges = _edges(graph)
    nodes = sorted({n for e in edges for n in e} | {f"dataset:{k[0]}:{k[1]}"
                                                      for k in graph.datasets()})  # fmt: skip
    rank = _layers(nodes, edges, _first_seen(graph))
    columns: dict[int, list[str]] = defaultdict(list)
    for node in nodes:
        columns[rank[node]].append(node)
    width = {c: max(len(_label(n)) for n in col) * CHAR_W + 2 * PAD for c, col in columns.items()}
    x, place = 20.0, {}
    for c in sorted(columns):
        for i, node in enumerate(sorted(columns[c])):
            place[node] = (x, 60 + i * (NODE_H + GAP_Y), width[c])
        x += width[c] + GAP_X
    lines = len(convergences) + len(reentries)
    height = 60 + max(len(col) for col in columns.values()) * (NODE_H + GAP_Y) + 60 + 16 * lines
    hot = {(f"dataset:{n[1]}:{n[2]}" if n[0] == "dataset" else None) for r in reentries
           for n in r.path}  # fmt: skip
    hot_edges = _reentry_edges(graph, reentries)
    upstreams = {f"dataset:{c.upstream[0]}:{c.upstream[1]}" for c in convergences}
    models = {f"dataset:{k[0]}:{k[1]}" for k in graph.models}
    opaque_ids = {f"dataset:{k[0]}:{k[1]}" for k in opaque}
    parts = [_header(x + 240, height)]
    for a, b in sorted(edges):
        parts.append(_edge(place[a], place[b], (a, b) in hot_edges))
    for node in nodes:
        style = ("opaque" if node in opaque_ids else "convergence" if node in upstreams
                 else "model" if node in models else node.split(":")[0])  # fmt: skip
        key = tuple(node.split(":", 2)[1:])
        parts.append(_node(node, place[node], style, node in hot, confidence.get(key)))
    parts.append(_legend(x + 10))
    parts.append(_findings_text(convergences, reentries, height))
    return "\n".join(parts) + "\n</svg>\n"


def _reentry_edges(graph: LineageGraph, reentries: list[ReEntry]) -> set[tuple[str, str]]:
    out = set()
    for r in reentries:
        ids = []
        for n in r.path:
            if n[0] == "run":
                job = graph.runs[n[1]].job
                ids.append(f"job:{job[0]}:{job[1]}" if job else None)
            else:
                ids.append(f"dataset:{n[1]}:{n[2]}")
        out.update((a, b) for a, b in pairwise(ids) if a and b)
    return out


def _header(width: float, height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans, Arial, sans-serif" '
        'font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n'
        '<text x="20" y="30" font-size="16" font-weight="bold">Lineage graph</text>\n'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 '
        'L0,10 z" fill="#999"/></marker><marker id="hot" viewBox="0 0 10 10" refX="10" '
        'refY="5" markerWidth="11" markerHeight="11" markerUnits="userSpaceOnUse" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#c62828"/>'
        "</marker></defs>"
    )


def _edge(a, b, hot: bool) -> str:
    x1, y1 = a[0] + a[2], a[1] + NODE_H / 2
    x2, y2 = b[0], b[1] + NODE_H / 2
    if x2 <= x1:  # an edge drawn backwards (closes a cycle): loop under the nodes
        mid = max(y1, y2) + NODE_H
        d = f"M{x1:.1f},{y1:.1f} C{x1 + 40:.1f},{mid:.1f} {x2 - 40:.1f},{mid:.1f} {x2:.1f},{y2:.1f}"
    else:
        cx = (x1 + x2) / 2
        d = f"M{x1:.1f},{y1:.1f} C{cx:.1f},{y1:.1f} {cx:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    colour, w, marker = ("#c62828", 3, "hot") if hot else ("#999", 1.2, "arrow")
    return (f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="{w}" '
            f'marker-end="url(#{marker})"/>')  # fmt: skip


def _node(node: str, at, style: str, hot: bool, confidence: float | None) -> str:
    x, y, w = at
    fill, stroke = COLOURS[style]
    dash = ' stroke-dasharray="5,3"' if style == "opaque" else ""
    width = 3 if hot or (style != "dataset" and style != "job") else 1.5
    rx = 14 if style == "job" else 4
    title = escape(node) + ("" if confidence is None else f" (confidence {confidence:.2f})")
    text = escape(_label(node))
    return (
        f'<g><title>{title}</title><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
        f'height="{NODE_H}" rx="{rx}" fill="{fill}" stroke="{stroke}" stroke-width="{width}"'
        f'{dash}/><text x="{x + PAD:.1f}" y="{y + 19:.1f}" fill="#222">{text}</text></g>'
    )


def _legend(x: float) -> str:
    rows = [("dataset", "dataset"), ("job", "job (run)"), ("opaque", "opaque source"),
            ("convergence", "shared upstream (convergence)"), ("model", "model")]  # fmt: skip
    out = [f'<text x="{x:.0f}" y="60" font-weight="bold">Legend</text>']
    for i, (style, text) in enumerate(rows):
        fill, stroke = COLOURS[style]
        y = 72 + i * 24
        dash = ' stroke-dasharray="5,3"' if style == "opaque" else ""
        out.append(
            f'<rect x="{x:.0f}" y="{y}" width="22" height="16" fill="{fill}" '
            f'stroke="{stroke}"{dash}/><text x="{x + 30:.0f}" y="{y + 12}">{text}</text>'
        )
    y = 72 + len(rows) * 24 + 8
    out.append(
        f'<line x1="{x:.0f}" y1="{y}" x2="{x + 22:.0f}" y2="{y}" stroke="#c62828" '
        f'stroke-width="3"/><text x="{x + 30:.0f}" y="{y + 4}">re-entry path</text>'
    )
    return "\n".join(out)  # fmt: skip


def _findings_text(convergences, reentries, height: float) -> str:
    lines = [f"convergence: {len(c.sources)} sources of {c.asset[1]} share {c.upstream[1]}"
             for c in convergences]  # fmt: skip
    lines += [f"re-entry: output of model {r.model[1]} returns as its training input"
              for r in reentries]  # fmt: skip
    return "\n".join(
        f'<text x="20" y="{height - 20 - 16 * (len(lines) - 1 - i):.0f}" fill="#c62828">'
        f"{escape(line)}</text>"
        for i, line in enumerate(lines)
    )
