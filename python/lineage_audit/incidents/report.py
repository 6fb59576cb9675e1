"""The audit artifact as one self-contained HTML page (and a PDF printed from it).

Everything is inline: the lineage picture (SVG from :mod:`lineage_audit.lineage.picture`),
the divergence series plotted with its watch and halt thresholds (SVG drawn here), the
tables, and the artifact and evidence bundle as ``application/json`` blocks with download
links. The page has no script; its Content-Security-Policy forbids every fetch
(``default-src 'none'``) and allows only its own stylesheet by hash, so opening it makes no
network request. :func:`render_pdf` prints it with headless Chromium (Debian's package).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
from html import escape
from pathlib import Path
from typing import Any

from .errors import IncidentError
from .regulatory import CITATIONS

__all__ = ["divergence_svg", "render_html", "render_pdf"]

CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px auto;max-width:1180px;color:#1d1d1d;
font-size:14px;line-height:1.45}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:2px solid #ddd}
table{border-collapse:collapse;margin:6px 0;width:100%}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top;font-size:13px}th{background:#f3f3f3}
code,pre{font-family:"DejaVu Sans Mono",monospace;font-size:12px}pre{background:#f7f7f7;
padding:8px;overflow-x:auto;white-space:pre-wrap}
.cites{font-size:11.5px;color:#555;margin:2px 0 8px}.cites li{margin:0}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:bold;color:#fff}
.high{background:#b71c1c}.medium{background:#e08a00}.low{background:#607d8b}
.state{background:#37474f}.figure{border:1px solid #ddd;padding:4px}
.figure svg{max-width:100%;height:auto}
#lineage-svg{overflow-x:auto}#lineage-svg svg{max-width:none}
.ok{color:#2e7d32}.bad{color:#c62828}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}.figure,table{break-inside:avoid}
#lineage-svg svg{max-width:100%}}
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
            "base-uri 'none'; form-action 'none'")  # fmt: skip


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value)
    if isinstance(value, float) and (value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6)):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _cites(field: str) -> str:
    items = "".join(f"<li>{_e(c)}</li>" for c in CITATIONS[field])
    return f'<ul class="cites" data-cites="{_e(field)}">{items}</ul>'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _download(name: str, obj: Any, element_id: str) -> str:
    text = json.dumps(obj, indent=1, sort_keys=True)
    data = base64.b64encode(text.encode()).decode()
    # A JSON block is data, never run (and the CSP allows no script at all).
    block = text.replace("</", "<\\/")
    return (f'<p><a download="{_e(name)}" href="data:application/json;base64,{data}">'
            f"Save {_e(name)}</a> ({len(text):,} bytes)</p>"
            f'<script type="application/json" id="{element_id}">{block}</script>')  # fmt: skip


# --- the divergence plot ------------------------------------------------------------------------


def divergence_svg(divergence: dict[str, Any], width: int = 1100, height: int = 300) -> str:
    """z per window as a line, points coloured by level, watch and halt thresholds dashed."""
    windows = [w for w in divergence["windows"] if isinstance(w.get("z"), int | float)
               and math.isfinite(w["z"])]  # fmt: skip
    watch, halt = float(divergence["watch_z"]), float(divergence["halt_z"])
    left, right, top, bottom = 56, 20, 30, 40
    if not windows:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60"><text '
            'x="10" y="30">no scored windows</text></svg>'
        )
    xs = [w["window"] for w in windows]
    zs = [w["z"] for w in windows]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(min(zs), -1.0), max(max(zs), halt + 1.0)

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" '
           'font-size="11" role="img" aria-label="divergence series">',
           '<rect width="100%" height="100%" fill="white"/>']  # fmt: skip
    for tick in range(math.ceil(y0), math.floor(y1) + 1):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(tick):.1f}" '
                   f'y2="{py(tick):.1f}" stroke="#eee"/><text x="{left - 8}" '
                   f'y="{py(tick) + 4:.1f}" text-anchor="end">{tick}</text>')  # fmt: skip
    for z, colour, label in ((watch, "#e08a00", "watch"), (halt, "#c62828", "halt")):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(z):.1f}" y2="{py(z):.1f}" '
                   f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="6,4"/>'
                   f'<text x="{left + 6}" y="{py(z) - 4:.1f}" '
                   f'fill="{colour}">{label} z = {z:g}</text>')  # fmt: skip
    points = " ".join(f"{px(x):.1f},{py(z):.1f}" for x, z in zip(xs, zs, strict=True))
    out.append(f'<polyline points="{points}" fill="none" stroke="#4a78b5" stroke-width="1.5"/>')
    colours = {"ok": "#4a78b5", "watch": "#e08a00", "halt": "#c62828"}
    if len(windows) <= 600:
        for w in windows:
            out.append(f'<circle cx="{px(w["window"]):.1f}" cy="{py(w["z"]):.1f}" r="3" '
                       f'fill="{colours.get(w.get("level"), "#4a78b5")}"><title>window '
                       f'{w["window"]}: z = {w["z"]:.2f}, p = {_num(w.get("p"))}, '
                       f'{_e(w.get("level"))}</title></circle>')  # fmt: skip
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 8}" '
               'text-anchor="middle">window</text>')  # fmt: skip
    out.append(
        f'<text x="14" y="{(top + height - bottom) / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + height - bottom) / 2:.0f})">z (sigmas)</text>'
    )
    out.append(f'<text x="{left}" y="18" font-size="13" font-weight="bold">Tier 3 divergence, '
               f'{_e(divergence.get("asset_class", ""))}</text></svg>')  # fmt: skip
    return "\n".join(out)


# --- sections ---------------------------------------------------------------------------------


def _header(a: dict[str, Any]) -> str:
    inc, conf = a["incident"], a["confidence"]
    frameworks = a["regulatory"]["frameworks"]
    scope = "".join(
        f"<tr><td>{_e(s['framework'])}</td><td>{_e(frameworks[s['framework']]['title'])}<br>"
        f"<i>{_e(frameworks[s['framework']]['status'])}</i></td><td>{_e(s['applies_to'])}</td></tr>"
        for s in a["regulatory"]["scope"]
    )
    return (
        f"<h1>Incident {_e(inc['id'])}</h1>"
        f'<p><span class="badge state" id="state">{_e(inc["state"])}</span> '
        f'<span class="badge {_e(conf["band"])}" id="confidence">confidence '
        f"{conf['confidence']:.6f} ({_e(conf['band'])})</span></p>"
        f"<p>Asset class <b>{_e(inc['asset_class'])}</b>, signal <b>{_e(inc['signal'])}</b>; "
        f"opened {_e(inc['opened_at'])} by {_e(inc['opened_by'])} under policy "
        f"{_e(inc['policy']['name'])} v{_e(inc['policy']['version'])} "
        f"(sha256 <code>{_e(inc['policy']['sha256'][:16])}…</code>). Incident digest "
        f"<code>{_e(inc['digest'])}</code>. Generated {_e(a['generated_at'])} by lineage-audit "
        f"{_e(a['generator']['version'])}.</p>{_cites('incident')}"
        f'<h2 id="scope">Regulatory scope</h2><table><thead><tr><th>framework</th><th>text'
        f"</th><th>applies to</th></tr></thead><tbody>{scope}</tbody></table>"
        f"<p><i>{_e(a['regulatory']['disclaimer'])}</i></p>"
    )


def _triggers(a: dict[str, Any]) -> str:
    rows = [[_e(t["kind"]), _e(t["tier"]), f"<code>{_e(json.dumps(t['detail'], sort_keys=True))}"
             "</code>", _e(t["ledger_seq"])] for t in a["triggers"]]  # fmt: skip
    return ('<h2 id="triggers">Triggers</h2>' + _table(["kind", "tier", "detail", "ledger seq"],
            rows) + _cites("triggers"))  # fmt: skip


def _confidence(a: dict[str, Any]) -> str:
    conf = a["confidence"]
    rows = [[str(i + 1), _e(s["name"]), f"<code>{_e(s['formula'])}</code>",
             _e(", ".join(f"{k} = {_num(v)}" for k, v in s["inputs"].items())),
             f"<b>{_num(s['value'], 6)}</b>", _e(s["note"])]
            for i, s in enumerate(conf["steps"])]  # fmt: skip
    inputs = json.dumps(conf["inputs"], sort_keys=True)
    return (
        f'<h2 id="confidence-rule">Confidence, step by step ({_e(conf["rule"])})</h2>'
        f"<p>Recorded inputs: <code>{_e(inputs)}</code>. Recompute with "
        "<code>lineage_audit.incidents.compute_confidence(ConfidenceInputs.from_json(inputs))"
        "</code>; the rule is documented in docs/tier5.md.</p>"
        + _table(["#", "step", "formula", "inputs", "value", "why"], rows)
        + _cites("confidence")
    )


def _lineage(a: dict[str, Any]) -> str:
    lin = a["evidence"]["lineage"]
    if not lin:
        return '<h2 id="lineage">Lineage (Tier 2)</h2><p>No lineage evidence.</p>' + _cites(
            "evidence.lineage"
        )
    found = "".join(f"<li><code>{_e(json.dumps(f, sort_keys=True))}</code></li>"
                    for f in lin["findings"]) or "<li>none</li>"  # fmt: skip
    return (
        f'<h2 id="lineage">Lineage subgraph of {_e(lin.get("node"))} (Tier 2)</h2>'
        f'<div class="figure" id="lineage-svg">{lin.get("svg", "")}</div>'
        f"<p>{len(lin.get('datasets', []))} datasets, {_e(lin.get('runs'))} runs, "
        f"{len(lin.get('events', []))} OpenLineage events (the picture is at full size: scroll "
        f"sideways on a wide graph; printed, it is fitted to the page). Findings "
        f"(k = {_e(lin.get('k'))}):"
        f"</p><ul>{found}</ul>{_cites('evidence.lineage')}"
    )


def _divergence(a: dict[str, Any]) -> str:
    div = a["evidence"]["divergence"]
    if not div:
        return '<h2 id="divergence">Divergence (Tier 3)</h2><p>No series.</p>' + _cites(
            "evidence.divergence"
        )
    alerting = [w for w in div["windows"] if w.get("level") in ("watch", "halt")]
    rows = [[_e(w["window"]), _num(w["z"]), _num(w["p"]), _num(w.get("effect")),
             _num(w.get("lambda_hat")), _e(w["level"])] for w in alerting[:200]]  # fmt: skip
    files = ", ".join(f"{_e(f['name'])} (<code>{_e(f['sha256'][:16])}…</code>)"
                      for f in div.get("files", []))  # fmt: skip
    return (
        '<h2 id="divergence">Divergence series (Tier 3)</h2>'
        f'<div class="figure" id="divergence-svg">{divergence_svg(div)}</div>'
        f"<p>{len(div['windows'])} windows shown of {_e(div.get('windows_total'))}; watch at "
        f"z ≥ {div['watch_z']:g}, halt at z ≥ {div['halt_z']:g} (rule "
        f"<code>{_e(json.dumps(div.get('halt_rule')))}</code>). Alerting windows:</p>"
        + _table(["window", "z", "p", "effect", "λ̂", "level"], rows)
        + (f"<p>Series files: {files}</p>" if files else "")
        + _cites("evidence.divergence")
    )


def _attribution(a: dict[str, Any]) -> str:
    parts = ['<h2 id="attribution">Attribution (Tier 4)</h2>']
    if not a["evidence"]["attribution"]:
        parts.append("<p>No attribution batch.</p>")
    for batch in a["evidence"]["attribution"]:
        parts.append(
            f"<p>Job <b>{_e(batch.get('job'))}</b>: model {_e(batch.get('model_id'))}, "
            f"{batch['rows']} texts, {batch['discoveries']} Benjamini-Hochberg discoveries at "
            f"q = {_e(batch.get('fdr_q'))} (fraction {batch['discovery_fraction']:.3f}), "
            f"smallest q {_num(batch['min_q'])}. <i>{_e(batch.get('note'))}</i></p>"
        )
        rows = [[_e(r["id"]), _num(r["attribution"]), _num(r.get("p")), _num(r.get("q_value")),
                 "yes" if r.get("discovery") else "no"] for r in batch["top"]]  # fmt: skip
        parts.append(_table(["text id", "attribution = 1 - p", "p", "q", "discovery"], rows))
    return "".join(parts) + _cites("evidence.attribution")


def _ratings(a: dict[str, Any]) -> str:
    rows = [[_e(r["source"]), f"<b>{_e(r['rating'])}</b>", _num(r.get("confidence")),
             _e("; ".join(r.get("reasons", [])))] for r in a["evidence"]["ratings"]]  # fmt: skip
    body = (
        _table(["source", "rating", "confidence", "reasons"], rows)
        if rows
        else ("<p>No Tier 1 ratings.</p>")
    )
    return '<h2 id="ratings">Provenance ratings (Tier 1)</h2>' + body + _cites("evidence.ratings")


def _timeline(a: dict[str, Any]) -> str:
    rows = []
    for t in a["timeline"]:
        out = t.get("outcome", {})
        status = out.get("status", "")
        cls = "ok" if status == "succeeded" else "bad"
        detail = ", ".join(f"{k} {t[k]}" for k in ("from", "to", "reason", "note", "z")
                           if t.get(k) not in (None, ""))  # fmt: skip
        rows.append([_e(t["at"]), f"<code>{_e(t['action'])}</code>", _e(t["actor"]), _e(detail),
                     f'<span class="{cls}">{_e(status)}</span> {_e(out.get("error", ""))}',
                     f"{t['seq']} / {_e(out.get('seq', ''))}"])  # fmt: skip
    thresholds = [[_e(t["at"]), f"<code>{_e(t['action'])}</code>", _e(t.get("window")),
                   _num(t.get("z")), f"<code>{_e(json.dumps(t.get('watch_rule')))}</code>",
                   f"<code>{_e(json.dumps(t.get('halt_rule')))}</code>",
                   _e(t.get("baseline_version") or t.get("version")), _e(t["seq"])]
                  for t in a["evidence"]["thresholds"]]  # fmt: skip
    halts = [[_e(h["action"]), _e(h["actor"]), _e(h.get("signal")),
              "delivered" if h["delivered"] else _e(h.get("webhook_error")),
              _e(h["intent_seq"])] for h in a["halts"]]  # fmt: skip
    return (
        '<h2 id="timeline">Incident timeline</h2>'
        + _table(["at", "action", "actor", "detail", "outcome", "intent / outcome seq"], rows)
        + _cites("timeline")
        + '<h2 id="halts">Halt hook</h2>'
        + (_table(["action", "actor", "signal", "webhook", "intent seq"], halts) if halts
           else "<p>The halt hook was not fired for this incident.</p>")
        + _cites("halts")
        + '<h2 id="thresholds">Threshold history</h2>'
        + (_table(["at", "record", "window", "z", "watch rule", "halt rule", "baseline", "seq"],
                  thresholds) if thresholds else "<p>No recorded threshold changes.</p>")
        + _cites("evidence.thresholds")
    )  # fmt: skip


def _ledger(a: dict[str, Any]) -> str:
    led = a["ledger"]
    commands = "\n".join(led["verify"]["commands"])
    return (
        '<h2 id="evidence-bundle">Evidence bundle: verify it offline</h2>'
        f"<p>The {len(led['bundle']['entries'])} ledger entries of this incident (seqs "
        f"{_e(', '.join(map(str, led['seqs'])))}), with their inclusion proofs against a "
        "signed checkpoint, are embedded below. Save the bundle and the public keys, then "
        "run either command (no network needed):</p>"
        f"<pre>{_e(commands)}</pre><p>{_e(led['verify']['browser'])} Pin the keys only after "
        "checking their fingerprints through a channel you trust: the keys embedded here "
        "came with the report.</p>"
        + _download("evidence.bundle.json", led["bundle"], "bundle-json")
        + _download("keys.pub.json", led["public_keys"], "keys-json")
        + _cites("ledger")
    )


def render_html(artifact: dict[str, Any]) -> str:
    """The report page of an artifact (see the module docstring)."""
    body = "".join([
        _header(artifact), _triggers(artifact), _confidence(artifact), _lineage(artifact),
        _divergence(artifact), _attribution(artifact), _ratings(artifact),
        _timeline(artifact), _ledger(artifact),
        '<h2 id="artifact">The artifact (JSON)</h2><p>Everything above, as the JSON artifact '
        "(validated against <code>artifact.schema.json</code>).</p>",
        _download(f"{artifact['incident']['id']}.artifact.json", artifact, "artifact-json"),
    ])  # fmt: skip
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>Incident {_e(artifact['incident']['id'])} — lineage-audit</title>"
        f"<style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def render_pdf(html_path: str | os.PathLike[str], pdf_path: str | os.PathLike[str], *,
               chromium: str | None = None, timeout: float = 120) -> Path:  # fmt: skip
    """Print the report to PDF with headless Chromium (Debian's ``chromium``), offline."""
    exe = chromium or os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not exe or not Path(exe).exists():
        raise IncidentError("chromium", "not found: install Debian's chromium or set "
                            "CHROMIUM_PATH", exe)  # fmt: skip
    source, target = Path(html_path).resolve(), Path(pdf_path).resolve()
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
             f"--user-data-dir={profile}", f"--print-to-pdf={target}", source.as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    if done.returncode != 0 or not target.exists():
        raise IncidentError("pdf", f"chromium failed ({done.returncode}): {done.stderr[-500:]}")
    return target
