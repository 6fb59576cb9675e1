"""Replay ATLAS-FX through the product: ``lineage-audit demo``.

One process plays every party around a real ``lineage-audit serve`` (SQLite ledger, lineage
store and incident store, local files, CPU), talking to it only through its interfaces:

1. setup: keys, callers' tokens, the incident policy, a Tier 3 baseline fitted on the feed's
   clean history (a write-ahead ``baseline.fit``), the server started as a child process;
2. hour by hour over the scenario: the emitters' OpenLineage events posted with the real
   ``openlineage-python`` client (Tier 2); at hour 0 the sources' Tier 1 checks (AIBOMs,
   their own OpenLineage emission) submitted as ratings; the hour's embeddings scored over
   gRPC (Tier 3) — alerts are the server's, incidents open inside it under the policy;
   after an incident opens, the model risk officer acknowledges it, an analyst's attempt to
   fire the halt hook is refused (and recorded), the officer fires it and the desk's gateway
   verifies the signed notice; at ``tier4_hour`` the Tier 4 batch (a real small language
   model standing in for ATLAS-FX) runs and is submitted; at ``disclosure_hour`` the vendor's
   full lineage arrives and Tier 2's re-entry finding joins the incident;
3. the audit artifact built by the server, validated against its schema, rendered to HTML;
   its evidence bundle verified offline (Python, the Rust extension, ``merkle-verify``) and
   the browser verifier copied beside it; the whole ledger verified.

The replay then compares what the tiers found with the scenario's construction (which sources
are opaque, which converge, which carry the model's output) and writes ``summary.json``.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atlas_fx import ASSET_CLASS, Scenario
from .deployment import Deployment, HaltReceiver, write_deployment
from .embeddings import FeedGenerator

__all__ = ["Replay", "run_replay"]

ENCODER = "atlas-fx-feed-encoder/64"
WAIT_S = 120.0  # for the server to act on a trigger (it does so after the triggering call)
COMMENTARY_ARCHIVE_ROWS = 2000  # embeddings of the model's past commentary (baseline targets)
CARRIER_MIN_DISCOVERIES = 2  # a source "carries model output" with >= 2 Tier 4 discoveries


def _say(hour: int | str, what: str, detail: str = "") -> None:
    label = f"h{hour:>3}" if isinstance(hour, int) else f"{hour:>4}"
    print(f"  {label}  {what:<30} {detail}".rstrip(), flush=True)


@dataclass
class Replay:
    """What happened, as the product reported it (``summary.json``)."""

    scenario: Scenario
    out: Path
    timeline: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    signal_hour: int | None = None  # the first Tier 3 halt
    incident_id: str | None = None
    incident_opened_hour: int | None = None
    found: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)

    def log(self, hour: int | str, tier: str, what: str, detail: str = "", **data: Any) -> None:
        _say(hour, f"{tier} {what}", detail)
        self.timeline.append({"hour": hour, "tier": tier, "what": what, "detail": detail, **data})

    def to_json(self) -> dict[str, Any]:
        s = self.scenario
        return {
            "scenario": {
                "name": "ATLAS-FX",
                "seed": s.seed,
                "size": s.size.name,
                "cooperating_vendors": s.cooperating_vendors,
                "tier3": s.tier3,
                "tier4": s.tier4,
            },
            "signal_hour": self.signal_hour,
            "incident_id": self.incident_id,
            "incident_opened_hour": self.incident_opened_hour,
            "truth": s.truth(),
            "found": self.found,
            "checks": self.checks,
            "timeline": self.timeline,
            "windows": self.windows,
        }


class _IncidentWatch:
    """A WatchIncidents stream read by a thread; the replay waits on it for the server's
    reaction to a trigger it has just caused."""

    def __init__(self, client: Any) -> None:
        self.events: queue.Queue = queue.Queue()
        self.stream = client.watch_incidents([ASSET_CLASS])
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.stream:
                self.events.put(event)
        except Exception:  # cancelled at the end, or the server stopped
            pass

    def wait_for(self, accept: Callable[[Any], bool], what: str) -> Any:
        deadline = time.monotonic() + WAIT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if accept(event):
                return event
        raise RuntimeError(f"the server did not report {what} within {WAIT_S:.0f} s")

    def close(self) -> None:
        self.stream.cancel()


def _share(window: Any) -> str:
    lam, se = window.lambda_hat, getattr(window, "lambda_se", None)
    if lam is None or lam != lam:
        return "n/a"
    return f"{lam:.1%}" + (f" ± {se:.1%}" if se is not None and se == se else "")


def _has_trigger(kind: str) -> Callable[[Any], bool]:
    return lambda e: e.kind in ("opened", "updated") and kind in list(e.incident.triggers)


# --- setup ----------------------------------------------------------------------------------


def _fit_baseline(r: Replay, feed: FeedGenerator, dep: Deployment) -> Any:
    from ..divergence import BaselineConfig, EmbeddingTable
    from ..divergence.jobs import FitJob
    from ..ledger import Ledger

    size = r.scenario.size
    vectors, times = feed.history(size.baseline_hours)
    source = r.out / "feed-history.npy"
    np.save(source, vectors)
    table = EmbeddingTable(np.load(source), times, str(source))
    archive = r.out / "commentary-archive.npy"  # the model's own outputs, embedded
    np.save(archive, feed.commentary_archive(COMMENTARY_ARCHIVE_ROWS))
    targets = EmbeddingTable(np.load(archive), None, str(archive))
    config = BaselineConfig(
        window_sizes=(size.rows_per_hour,),
        null_windows=size.null_windows,
        encoder_id=ENCODER,
        asset_class=ASSET_CLASS,
        seed=r.scenario.seed,
    )
    job = FitJob(
        table,
        r.out / f"baseline-{ASSET_CLASS}",
        config,
        targets=targets,
        progress=sys.stderr.isatty(),
    )
    with Ledger.open(r.out / "ledger.db", dep.keys) as ledger:
        baseline = job.run(ledger, dep.actor("mro"))
    arl = baseline.arl0[size.rows_per_hour]
    r.log(
        "setup",
        "T3",
        "baseline fitted",
        f"{baseline.version}: {len(vectors)} rows of clean "
        f"history, {size.null_windows} null windows, ARL0 > {arl['arl0_lower_95']:.0f} "
        "windows",
    )
    return baseline


# --- the hours ------------------------------------------------------------------------------


class _Hours:
    """Everything that happens hour by hour, through the server's interfaces."""

    def __init__(self, r: Replay, dep: Deployment, server: Any, receiver: HaltReceiver) -> None:
        from openlineage.client import OpenLineageClient
        from openlineage.client.transport.http import (
            ApiKeyTokenProvider,
            HttpConfig,
            HttpTransport,
        )

        from ..client import Client
        from .lineage_events import lineage_events

        self.r, self.dep, self.server, self.receiver = r, dep, server, receiver
        self.s = r.scenario
        self.feed = FeedGenerator(self.s)
        self.events = lineage_events(self.s)
        self.sent = 0
        http = HttpConfig(
            url=server.http_url,
            auth=ApiKeyTokenProvider({"apiKey": dep.tokens["ingest"]}),
            retry={"total": 2},
        )
        self.lineage = OpenLineageClient(transport=HttpTransport(http))
        self.desk = Client(server.address, token=dep.tokens["desk"])
        self.mro = Client(server.address, token=dep.tokens["mro"])
        self.analyst = Client(server.address, token=dep.tokens["analyst"])
        self.batch = Client(server.address, token=dep.tokens["risk-batch"])
        self.watch = _IncidentWatch(self.mro)
        self.halted_hour: int | None = None

    def close(self) -> None:
        self.watch.close()
        for client in (self.desk, self.mro, self.analyst, self.batch):
            client.close()

    # lineage ------------------------------------------------------------------------------

    def post_lineage(self, until_hour: float) -> int:
        """Post every event due before ``until_hour`` with the real OpenLineage client."""
        start = self.sent
        while self.sent < len(self.events) and self.events[self.sent][0] < until_hour:
            self.lineage.emit(self.events[self.sent][1])
            self.sent += 1
        return self.sent - start

    # Tier 1 ---------------------------------------------------------------------------------

    def emissions(self, source: Any) -> int:
        """The source's own OpenLineage emission, as the server's lineage read reports it."""
        import urllib.error
        import urllib.request

        url = f"{self.server.http_url}/api/v1/lineage?nodeId=dataset:{source.id}&depth=0"
        request = urllib.request.Request(url)
        request.add_header("Authorization", f"Bearer {self.dep.tokens['risk-batch']}")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                (node,) = json.loads(reply.read())["graph"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # never named by any event
                return 0
            raise
        return int(node["data"]["openlineage"]["emitted"])

    def rate_sources(self) -> None:
        from ..provenance import rate_source
        from .aibom import write_aiboms

        aiboms = write_aiboms(self.s, self.r.out / "aibom")
        ratings = [
            rate_source(src.id, aibom=aiboms.get(src.id), openlineage_events=self.emissions(src))
            for src in self.s.sources
        ]
        self.batch.submit_ratings(ratings)
        counts = Counter(x.rating for x in ratings)
        opaque = sorted(x.source for x in ratings if x.rating == "opaque")
        self.r.found["tier1"] = {
            x.source: {"rating": x.rating, "confidence": x.confidence} for x in ratings
        }
        self.r.found["opaque"] = opaque
        self.r.log(
            0,
            "T1",
            "sources rated",
            ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            + f"; opaque: {', '.join(opaque) or 'none'}",
        )

    # Tier 3 ---------------------------------------------------------------------------------

    def score(self, hour: int) -> None:
        """Append the hour's rows to the asset's window stream (one window per hour)."""
        rows = self.feed.hour(hour)
        (reply,) = self.desk.stream(
            ASSET_CLASS, [rows.embeddings], encoder_id=ENCODER, times_ns=[rows.times_ns]
        )
        (window,) = reply.windows
        reliance = reply.reliance or {}
        level = str(window.level.value if hasattr(window.level, "value") else window.level)
        suspended = reliance.get("state") == "suspended"
        self.r.windows.append(
            {
                "hour": hour,
                "window": window.window,
                "z": window.z,
                "effect": window.effect,
                "lambda_hat": window.lambda_hat,
                "level": level,
                "true_share": rows.share,
                "reliance_suspended": suspended,
            }
        )
        previous = self.r.windows[-2]["level"] if len(self.r.windows) > 1 else "ok"
        if level != previous:
            self.r.log(
                hour,
                "T3",
                f"alert {previous} -> {level}",
                f"window {window.window}: z {window.z:.2f}, effect {window.effect:.3f}, "
                f"model share est. {_share(window)} (true {rows.share:.1%})",
            )
        if level == "halt" and self.r.signal_hour is None:
            self.r.signal_hour = hour
            self._incident_from(hour, "tier3.halt", "the Tier 3 halt")

    def _incident_from(self, hour: int, kind: str, what: str) -> None:
        event = self.watch.wait_for(_has_trigger(kind), f"an incident from {what}")
        inc = event.incident
        if self.r.incident_id is None:
            self.r.incident_id, self.r.incident_opened_hour = inc.id, hour
        self.r.log(
            hour,
            "T5",
            f"incident {event.kind}",
            f"{inc.id}: confidence {inc.confidence:.6f} ({inc.band}), triggers "
            f"{', '.join(inc.triggers)}",
            incident=inc.id,
            confidence=inc.confidence,
            band=inc.band,
            triggers=list(inc.triggers),
            ledger_seq=event.ledger_seq,
        )

    # the model risk officer -----------------------------------------------------------------

    def respond(self, hour: int) -> None:
        """Acknowledge, try the halt as an analyst (refused), fire it as the officer."""
        import grpc

        inc = self.r.incident_id
        self.mro.acknowledge_incident(inc, note="ATLAS-FX inputs drifting; investigating")
        self.r.log(hour, "T5", "acknowledged", f"{inc} by {self.dep.actor('mro')}")
        try:
            self.analyst.fire_halt(ASSET_CLASS, "halt the desk's reliance", inc)
            refused = "NOT refused"
        except grpc.RpcError as exc:
            refused = f"refused: {exc.code().name} ({exc.details()})"
        self.r.checks["analyst_halt"] = refused
        self.r.log(hour, "T5", "halt by analyst", refused)
        self.mro.fire_halt(ASSET_CLASS, "inputs carry our own model's output (Tier 3 halt)", inc)
        self.halted_hour = hour
        got = self.receiver.received[-1] if self.receiver.received else {"verified": False}
        self.r.checks["webhook_verified"] = got["verified"]
        self.r.log(
            hour,
            "T5",
            "halt fired",
            f"by {self.dep.actor('mro')}; the desk's gateway "
            f"{'verified both signatures' if got['verified'] else 'REJECTED the notice'}",
        )

    # Tier 4 ---------------------------------------------------------------------------------

    def attribute(self, hour: int) -> None:
        from .tier4 import run_tier4

        job_dir, per_source = run_tier4(
            self.s,
            self.r.out / "tier4",
            self.dep,
            lambda what, detail: _say(hour, f"T4 {what}", detail),
        )
        carriers = sorted(s for s, n in per_source.items() if n >= CARRIER_MIN_DISCOVERIES)
        self.r.found["tier4_discoveries"] = per_source
        self.r.found["carrying_model_output"] = carriers
        reply = self.batch.submit_attribution(ASSET_CLASS, job_dir)
        self.r.log(
            hour,
            "T4",
            "batch submitted",
            f"discoveries per source {dict(per_source)}; "
            f"carrying the model's output: {', '.join(carriers) or 'none'}",
        )
        if _fires_tier4(reply):
            self._incident_from(hour, "tier4.discoveries", "the Tier 4 batch")

    # Tier 2 ---------------------------------------------------------------------------------

    def disclosure(self, hour: int) -> None:
        self.r.log(
            hour, "T2", "vendor disclosure", "FXWire re-emits its refresh run with its full inputs"
        )
        self._incident_from(hour, "tier2.re-entry", "the Tier 2 re-entry finding")


def _fires_tier4(reply: Any) -> bool:
    return bool(getattr(reply, "incident", None) and reply.incident.id)


# --- the whole replay -----------------------------------------------------------------------


def _timeline(r: Replay, hours: _Hours) -> None:
    s = r.scenario
    n = hours.post_lineage(0)
    r.log(
        "setup",
        "T2",
        "lineage history posted",
        f"{n} OpenLineage events (openlineage-python over HTTP)",
    )
    for hour in _progress(range(s.end_hour), "hours"):
        hours.post_lineage(hour + 1)
        if hour == 0:
            hours.rate_sources()
        if s.tier3 and hour < s.end_hour:
            hours.score(hour)
        if r.incident_id is not None and hours.halted_hour is None:
            hours.respond(hour)
        if s.tier4 and hour == s.tier4_hour:
            hours.attribute(hour)
        if s.cooperating_vendors and hour == s.disclosure_hour:
            hours.disclosure(hour)
    suspended = [w["hour"] for w in r.windows if w["reliance_suspended"]]
    if suspended:
        r.log(
            s.end_hour - 1,
            "T3",
            "scoring continues",
            f"replies report the signal suspended "
            f"from hour {suspended[0]} on; windows are still scored and recorded",
        )
    r.checks["scored_while_suspended"] = len(suspended)


def _progress(items: range, unit: str):
    from tqdm.auto import tqdm

    # The log lines are the progress on a pipe; a bar only where someone watches a terminal.
    return tqdm(items, unit=unit, leave=False, disable=not sys.stderr.isatty())


def _artifact(r: Replay, hours: _Hours) -> dict[str, Any]:
    from ..incidents.artifact import validate_artifact
    from ..incidents.report import render_html

    if r.incident_id is None:
        r.log("end", "T5", "no incident", "nothing to report")
        return {}
    artifact = hours.mro.incident_artifact(r.incident_id)
    validate_artifact(artifact)
    (r.out / "artifact.json").write_text(json.dumps(artifact, indent=2) + "\n")
    (r.out / "report.html").write_text(render_html(artifact), encoding="utf-8")
    r.checks["pdf"] = _pdf(r.out / "report.html")
    bundle = r.out / "evidence.bundle.json"
    bundle.write_text(json.dumps(artifact["ledger"]["bundle"], indent=2) + "\n")
    conf = artifact["confidence"]
    r.found["confidence"] = {
        "p": conf["p"],
        "confidence": conf["confidence"],
        "band": conf["band"],
        "rule": conf.get("rule"),
    }
    r.found["findings"] = (artifact["evidence"].get("lineage") or {}).get("findings", [])
    r.log(
        "end",
        "T5",
        "artifact",
        f"artifact.json (schema valid), report.html, PDF {r.checks['pdf']}; confidence "
        f"{conf['confidence']:.6f} ({conf['band']})",
    )
    for step in conf["steps"]:
        _say("", f"  {step['name']}", f"{step['formula']} = {step['value']:.6g}")
    return artifact


def _pdf(html: Path) -> str:
    """The report printed by headless Chromium, where there is one (Debian's package)."""
    from ..incidents import IncidentError
    from ..incidents.report import render_pdf

    try:
        return str(render_pdf(html, html.with_suffix(".pdf")))
    except IncidentError as exc:  # no chromium here: the HTML report is the artifact
        return f"skipped: {exc}"


def _verify(r: Replay, dep: Deployment) -> None:
    from ..ledger import load_public_keys, verify_bundle, verify_ledger

    public = load_public_keys(dep.public_keys)
    verdicts = {
        "ledger (Python)": verify_ledger(r.out / "ledger.db", public, engine="python"),
        "ledger (Rust)": verify_ledger(r.out / "ledger.db", public, engine="auto"),
    }
    lines = {k: v.line() for k, v in verdicts.items()}
    bundle_path = r.out / "evidence.bundle.json"
    if bundle_path.exists():
        bundle = json.loads(bundle_path.read_text())
        lines["bundle (Python)"] = verify_bundle(bundle, public).line()
        lines["bundle (Rust extension)"] = _rust_bundle(bundle_path, dep.public_keys)
        lines["bundle (merkle-verify)"] = _merkle_verify_cli(bundle_path, dep.public_keys)
        lines["browser verifier"] = _browser_page(r.out)
    for what, line in lines.items():
        r.log("end", "verify", what, line)
    r.checks["verified"] = lines
    r.checks["all_valid"] = all(
        line.startswith(("VALID", "exit 0", "copied")) for line in lines.values()
    )
    if bundle_path.exists():
        r.checks["tamper_caught"] = _tamper(r, bundle_path, dep.public_keys, public)


def _tamper(r: Replay, bundle_path: Path, keys: Path, public: Any) -> bool:
    """One character of the first entry's signed payload changed in a copy: both verifiers
    must refuse it (the checks above are not vacuous)."""
    from ..ledger import verify_bundle

    bundle = json.loads(bundle_path.read_text())
    entry = bundle["entries"][0]
    envelope = json.loads(entry["envelope"]) if isinstance(entry["envelope"], str) else None
    target = envelope if envelope is not None else entry["envelope"]
    payload = target["payload"]
    target["payload"] = ("A" if payload[0] != "A" else "B") + payload[1:]
    if envelope is not None:
        entry["envelope"] = json.dumps(envelope)
    copy = r.out / "tampered.bundle.json"
    copy.write_text(json.dumps(bundle, indent=2) + "\n")
    python = verify_bundle(bundle, public)
    rust = _rust_bundle(copy, keys)
    caught = not python.valid and rust.startswith("INVALID")
    r.log(
        "end",
        "tamper",
        f"entry seq {entry['seq']} altered",
        f"Python: {python.line()}; Rust: {rust}",
    )
    return caught


def _rust_bundle(bundle: Path, keys: Path) -> str:
    try:
        from .. import _merkle_verify
    except ImportError:
        return "MISSING: the Rust extension is not built (make setup)"
    verdict = _merkle_verify.verify_bundle(bundle.read_bytes(), keys.read_bytes())
    if verdict["valid"]:
        return "VALID " + verdict["message"]
    return f"INVALID {verdict['reason']} seq={verdict['seq']}: {verdict['message']}"


def _merkle_verify_cli(bundle: Path, keys: Path) -> str:
    import os

    binary = os.environ.get("MERKLE_VERIFY_BIN") or shutil.which("merkle-verify")
    built = Path("target/release/merkle-verify")
    binary = binary or (str(built) if built.exists() else None)
    if binary is None:
        return "MISSING: merkle-verify is not built (make setup)"
    done = subprocess.run(
        [binary, str(bundle), "--keys", str(keys)], capture_output=True, text=True, check=False
    )
    return f"exit {done.returncode}: {(done.stdout or done.stderr).strip()}"


def _browser_page(out: Path) -> str:
    from ..server.verify_page import BUILD_HINT
    from ..server.verify_page import DEFAULT_PAGE as page

    if not page.is_file():
        return f"MISSING: {BUILD_HINT}"
    shutil.copyfile(page, out / "verify.html")
    return f"copied to {out / 'verify.html'}: open it from disk, drop in the bundle and keys"


def _compare(r: Replay) -> None:
    """The tiers' findings against the construction."""
    truth = r.scenario.truth()
    conv = [f for f in r.found.get("findings", []) if f.get("finding") == "convergence"]
    re_entry = [f for f in r.found.get("findings", []) if f.get("finding") == "re-entry"]
    r.found["converging"] = sorted(conv[0]["sources"]) if conv else []
    r.found["converges_on"] = conv[0]["upstream"] if conv else None
    r.found["re_entry_model"] = re_entry[0]["model"] if re_entry else None
    keys = ["opaque", "converging", "converges_on", "re_entry_model"]
    if r.scenario.tier4:
        keys.append("carrying_model_output")
    match = {k: r.found.get(k) == truth[k] for k in keys}
    r.checks["matches_construction"] = match
    for k in keys:
        r.log(
            "end",
            "check",
            k.replace("_", " "),
            f"{'matches' if match[k] else 'DIFFERS'}: found {r.found.get(k)}, built {truth[k]}",
        )


def run_replay(scenario: Scenario, out: Path) -> Replay:
    """Replay ``scenario`` into ``out`` (emptied first); see the module docstring."""
    from ..server.process import ServerProcess

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    r = Replay(scenario, out)
    started = time.monotonic()
    with HaltReceiver(out / "keys.pub.json") as receiver:
        dep = write_deployment(scenario, out, receiver.url)
        r.log(
            "setup",
            "--",
            "deployment",
            f"keys, tokens for {', '.join(dep.tokens)}, policy.toml, server.toml",
        )
        _fit_baseline(r, FeedGenerator(scenario), dep)
        with ServerProcess(dep.config, log=out / "server.log") as server:
            r.log(
                "setup",
                "--",
                "server",
                f"lineage-audit serve: gRPC {server.address}, HTTP {server.http_url}",
            )
            hours = _Hours(r, dep, server, receiver)
            try:
                _timeline(r, hours)
                _artifact(r, hours)
            finally:
                hours.close()
    _verify(r, dep)
    _compare(r)
    r.checks["seconds"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(r.to_json(), indent=2, default=str) + "\n")
    return r
