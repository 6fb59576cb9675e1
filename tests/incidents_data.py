"""Shared pieces of the Tier 5 tests: a policy, evidence, a loopback webhook receiver."""

from __future__ import annotations

import http.server
import threading
from contextlib import contextmanager

from lineage_audit.incidents import Evidence, Trigger

POLICY = """
[policy]
name = "atlas-fx-test"
version = "1"

[asset_classes.fx-news]
signal = "fx-news-sentiment"
lineage_node = "dataset:deployer:news-inputs"
[asset_classes.fx-news.triggers]
tier3 = "halt"
tier2_re_entry = true
tier2_convergence_k = 3
tier4_discovery_fraction = 0.2
[asset_classes.fx-news.roles]
acknowledge = ["token:mro", "token:analyst"]
resolve = ["token:mro"]
[asset_classes.fx-news.halt]
enabled = true
authorised = ["token:mro"]
webhook = "{webhook}"
timeout_s = 5

[asset_classes.fx-rates]
signal = "fx-rates-curve"
[asset_classes.fx-rates.roles]
acknowledge = ["token:mro"]
resolve = ["token:mro"]
"""


def policy_text(webhook: str = "http://127.0.0.1:9/halt") -> str:
    return POLICY.replace("{webhook}", webhook)


def halt_evidence(asset_class: str = "fx-news") -> Evidence:
    windows = [
        {
            "window": i,
            "z": z,
            "p": p,
            "effect": 0.1,
            "lambda_hat": 0.0,
            "level": lv,
            "start_time_ns": None,
            "end_time_ns": None,
            "baseline_version": "v1",
        }
        for i, (z, p, lv) in enumerate(
            [
                (0.1, 0.46, "ok"),
                (2.4, 0.008, "watch"),
                (3.3, 0.0005, "halt"),
                (3.6, 0.00016, "halt"),
            ]
        )
    ]
    divergence = {
        "asset_class": asset_class,
        "watch_z": 2.0,
        "halt_z": 3.0,
        "halt_rule": {"kind": "consecutive", "n": 2, "z": 3.0},
        "windows": windows,
        "windows_total": 4,
        "files": [],
    }
    ratings = [
        {
            "source": "feeds:indep-1",
            "rating": "opaque",
            "confidence": 0.3,
            "reasons": ["no OpenLineage events, no AIBOM and no C2PA manifest"],
        }
    ]
    return Evidence(asset_class, divergence=divergence, ratings=ratings)  # fmt: skip


def halt_trigger(asset_class: str = "fx-news", seq: int | None = None) -> Trigger:
    return Trigger(3, "tier3.halt", asset_class, {"window": 3, "z": 3.6}, seq)


class Receiver:
    """A webhook receiver on loopback (http.server in a thread) keeping what it got."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                outer.bodies.append(self.rfile.read(length))
                outer.headers.append(dict(self.headers))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/halt"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@contextmanager
def receiver(status: int = 200):
    r = Receiver(status)
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def incident_server_config(folder, baseline_dir, policy: str, tokens: dict[str, str], *,
                           extra: str = ""):  # fmt: skip
    """A server config in ``folder`` with ``[incidents]`` (``policy`` as policy.toml), static
    bearer tokens (``{name: token}``, stored as SHA-256) required, and ``extra`` tables."""
    from lineage_audit.server import ServerConfig
    from lineage_audit.server.auth import hash_token
    from server_fixtures import write_server_config

    (folder / "policy.toml").write_text(policy)
    (folder / "tokens.toml").write_text("".join(
        f'[[token]]\nname = "{name}"\nsha256 = "{hash_token(token)}"\n'
        for name, token in tokens.items()))  # fmt: skip
    tables = (f'{extra}[incidents]\ndb = "incidents.db"\npolicy = "policy.toml"\n\n'
              '[auth]\nrequired = true\ntokens = "tokens.toml"\n')  # fmt: skip
    return ServerConfig.from_toml(write_server_config(folder, baseline_dir, extra=tables))
