"""The deployment ATLAS-FX runs on: keys, callers' tokens, the incident policy, the server
config, and the loopback receiver of the halt webhook (the FX desk's order gateway).

Who is who (bearer tokens; the server records ``token:<name>`` as the actor):

=================  ============================================================
``desk``           the inference pipeline: sends the feed's embeddings to score
``ingest``         the OpenLineage emitters (posted through the deployer's relay)
``risk-batch``     the Tier 4 batch host: submits attribution jobs and Tier 1 ratings
``mro``            the model risk officer: acknowledges, resolves, may fire the halt
``analyst``        may acknowledge, may not fire the halt
=================  ============================================================
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..incidents import verify_halt_envelope
from ..server.auth import hash_token
from .atlas_fx import ASSET_CLASS, ASSET_DATASET, Scenario

__all__ = ["CALLERS", "Deployment", "HaltReceiver", "write_deployment"]

CALLERS = ("desk", "ingest", "risk-batch", "mro", "analyst")
SIGNAL = "fx-news-sentiment"  # what a halt suspends reliance on


@dataclass
class Deployment:
    out: Path
    config: Path  # server.toml
    policy: Path
    keys: Path  # key directory (private keys, 0600)
    public_keys: Path  # keys.pub.json
    tokens: dict[str, str] = field(default_factory=dict)  # caller -> bearer token

    def actor(self, caller: str) -> str:
        return f"token:{caller}"


def _policy(scenario: Scenario, webhook: str) -> str:
    tier3 = "halt" if scenario.tier3 else "off"
    node = "dataset:" + ":".join(ASSET_DATASET)
    return f"""# written by lineage-audit demo (ATLAS-FX)
[policy]
name = "atlas-fx"
version = "2026-11-01"

[asset_classes.{ASSET_CLASS}]
signal = "{SIGNAL}"
lineage_node = "{node}"

[asset_classes.{ASSET_CLASS}.triggers]
tier3 = "{tier3}"                  # a Tier 3 halt opens an incident (watches are recorded only)
tier2_re_entry = true              # the deployer's model re-ingesting its own output
tier2_convergence_k = 0            # shared upstreams are common: evidence, not a trigger
tier4_discovery_fraction = 0.05    # >= 5% of a batch attributed to the model at q = 0.1

[asset_classes.{ASSET_CLASS}.roles]
acknowledge = ["token:mro", "token:analyst"]
resolve = ["token:mro"]
submit = ["token:risk-batch", "token:mro"]

[asset_classes.{ASSET_CLASS}.halt]
enabled = true
authorised = ["token:mro"]
webhook = "{webhook}"
timeout_s = 5
"""


def _server_config(scenario: Scenario) -> str:
    return f"""# written by lineage-audit demo (ATLAS-FX)
[server]
host = "127.0.0.1"
port = 0
http_port = 0
series_dir = "series"
actor = "server:atlas-fx"

[ledger]
db = "ledger.db"
keys = "keys"

[assets.{ASSET_CLASS}]
baseline = "baseline-{ASSET_CLASS}"
window = {scenario.size.rows_per_hour}

[lineage]
db = "lineage.db"

[incidents]
db = "incidents.db"
policy = "policy.toml"

[auth]
required = true
tokens = "tokens.toml"
"""


def write_deployment(scenario: Scenario, out: Path, webhook: str) -> Deployment:
    """Keys, tokens (random, 0600; the token file holds only their SHA-256), policy, config."""
    from ..ledger import generate_keys

    keyring = generate_keys(out / "keys", name="atlas-fx.lineage-audit.local/ledger")
    public = out / "keys.pub.json"
    public.write_text(json.dumps(keyring.public_keys().to_json(), indent=2) + "\n")
    tokens = {caller: secrets.token_urlsafe(24) for caller in CALLERS}
    entries = "".join(
        f'[[token]]\nname = "{c}"\nsha256 = "{hash_token(t)}"\n\n' for c, t in tokens.items()
    )
    (out / "tokens.toml").write_text(entries)
    secret = out / "tokens.secret.json"
    secret.touch(mode=0o600)
    secret.write_text(json.dumps(tokens, indent=2) + "\n")
    policy = out / "policy.toml"
    policy.write_text(_policy(scenario, webhook))
    config = out / "server.toml"
    config.write_text(_server_config(scenario))
    return Deployment(out, config, policy, out / "keys", public, tokens)


class HaltReceiver:
    """A loopback HTTP endpoint standing in for the desk's order gateway: it accepts a halt
    only if both signatures of the DSSE envelope verify against the pinned ledger keys."""

    def __init__(self, public_keys: Path) -> None:
        self.public_keys = public_keys
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(receiver.check(body))
                ok = receiver.received[-1]["verified"]
                self.send_response(200 if ok else 400)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/halt"

    def check(self, body: bytes) -> dict[str, Any]:
        try:
            payload = verify_halt_envelope(body, self.public_keys)
        except Exception as exc:  # any failure is a refusal; say which
            return {"verified": False, "error": str(exc), "sha256": _sha256(body)}
        return {"verified": True, "payload": payload, "sha256": _sha256(body)}

    def __enter__(self) -> HaltReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
