"""Identity through the real services: with auth on, every service refuses a caller without
valid credentials, and the caller's identity (bearer token or mTLS certificate subject) is the
actor of the ledger records its calls cause."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from lineage_audit.client import Client
from lineage_audit.ledger import Ledger
from lineage_audit.server import ServerConfig, ServerThread
from lineage_audit.server.auth import hash_token
from pki import CLIENT_A, make_pki
from server_fixtures import ENCODER, N, clean_rows, fit_small_baseline, shifted_rows
from server_fixtures import write_server_config as _config

TOKEN = "cluster-a-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    return fit_small_baseline(tmp_path_factory.mktemp("bl") / "baseline")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def _serve(path, tmp_path):
    config = ServerConfig.from_toml(path)
    ledger = Ledger.open(config.ledger_db, config.ledger_keys)
    return ServerThread(config, ledger=ledger), ledger


def _halt_actors(ledger: Ledger) -> list[str]:
    return [
        e.statement()["predicate"]["actor"]
        for e in ledger.entries()
        if e.statement()["predicate"]["action"].startswith("alert.")
    ]


def _alert_stream(client: Client) -> None:
    rng = np.random.default_rng(4)
    batches = [clean_rows(rng, N), *(shifted_rows(rng, N) for _ in range(3))]
    replies = list(client.stream("news", batches, encoder_id=ENCODER))
    assert replies[-1].windows[0].level == "halt"


def test_token_auth_refuses_strangers_everywhere_and_records_the_caller(baseline_dir, tmp_path):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[token]]\nname = "cluster-a"\nsha256 = "{hash_token(TOKEN)}"\n')
    path = _config(
        tmp_path, baseline_dir, extra='[auth]\nrequired = true\ntokens = "tokens.toml"\n'
    )
    server, ledger = _serve(path, tmp_path)
    rows = clean_rows(np.random.default_rng(1), N)
    with server:
        for token in (None, "wrong-token-000000000000", TOKEN[:-1]):
            with Client(server.address, token=token) as stranger:
                calls = {
                    "Score": lambda c=stranger: c.score("news", rows, encoder_id=ENCODER),
                    "StreamScore": lambda c=stranger: list(c.stream("news", [rows])),
                    "WatchAlerts": lambda c=stranger: next(iter(c.watch_alerts())),
                    "ListBaselines": lambda c=stranger: c.list_baselines(),
                    "GetCheckpoint": lambda c=stranger: c.checkpoint(create=True),
                    "GetEntries": lambda c=stranger: list(c.entries()),
                }
                for name, call in calls.items():
                    with pytest.raises(grpc.RpcError) as info:
                        call()
                    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
                    if token:
                        assert token not in info.value.details()
        size_before = ledger.size
        with Client(server.address, token=TOKEN) as caller:
            assert caller.health() == "SERVING"  # health stays open for probes
            _alert_stream(caller)
            assert caller.checkpoint(create=True).tree_size > size_before
    assert set(_halt_actors(ledger)) == {"token:cluster-a"}
    ledger.close()


def test_mtls_identity_is_the_certificate_subject_and_a_foreign_cert_is_refused(
    baseline_dir, tmp_path, pki
):
    tls = (
        f'[tls]\ncert = "{pki.server.cert}"\nkey = "{pki.server.key}"\n'
        f'client_ca = "{pki.ca}"\n\n[auth]\nrequired = true\n'
    )
    server, ledger = _serve(_config(tmp_path, baseline_dir, extra=tls), tmp_path)
    with server:
        address = f"localhost:{server.port}"
        with Client(address, ca=pki.ca, cert=pki.rogue.cert, key=pki.rogue.key) as rogue:
            with pytest.raises(grpc.RpcError) as info:
                rogue.score("news", clean_rows(np.random.default_rng(2), N), encoder_id=ENCODER)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # handshake refused
        with Client(address, ca=pki.ca) as no_cert, pytest.raises(grpc.RpcError):
            no_cert.list_baselines()
        with Client(address, ca=pki.ca, cert=pki.client_a.cert, key=pki.client_a.key) as caller:
            _alert_stream(caller)
    assert set(_halt_actors(ledger)) == {f"x509:{CLIENT_A}"}
    ledger.close()


def _https_get(url: str, context) -> int:
    import urllib.request

    with urllib.request.urlopen(url, context=context, timeout=30) as reply:
        return reply.status


def test_the_http_side_serves_tls_with_the_servers_certificate(baseline_dir, tmp_path, pki):
    """[tls] covers the HTTP side too: HTTPS with the same certificate, plain HTTP refused,
    and the real OpenLineage client posts over it (trusting the CA)."""
    import ssl
    import urllib.error
    import uuid

    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[token]]\nname = "ingest"\nsha256 = "{hash_token(TOKEN)}"\n')
    extra = (
        f'[tls]\ncert = "{pki.server.cert}"\nkey = "{pki.server.key}"\n\n'
        '[lineage]\ndb = "lineage.db"\n\n[auth]\nrequired = true\ntokens = "tokens.toml"\n'
    )
    server, ledger = _serve(_config(tmp_path, baseline_dir, extra=extra), tmp_path)
    trusting = ssl.create_default_context(cafile=str(pki.ca))
    with server:
        port = server.running.http_port
        assert _https_get(f"https://localhost:{port}/healthz", trusting) == 200
        with pytest.raises(urllib.error.URLError) as refused:  # a certificate we do not trust
            _https_get(f"https://localhost:{port}/healthz", ssl.create_default_context())
        assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # no plain HTTP
            _https_get(f"http://localhost:{port}/healthz", None)
        http = HttpConfig(
            url=f"https://localhost:{port}",
            verify=str(pki.ca),
            auth=ApiKeyTokenProvider({"apiKey": TOKEN}),
            retry={"total": 0},
        )
        event = RunEvent(
            eventType=RunState.COMPLETE,
            eventTime="2026-11-29T10:00:00Z",
            run=Run(runId=str(uuid.uuid4())),
            job=Job(namespace="etl", name="x"),
            producer="https://github.com/lineage-audit/tests",
        )
        OpenLineageClient(transport=HttpTransport(http)).emit(event)
        assert server.running.lineage.store.count() == 1
    ledger.close()


def test_with_mtls_the_http_side_wants_a_client_certificate_too(baseline_dir, tmp_path, pki):
    import ssl
    import urllib.error

    extra = f'[tls]\ncert = "{pki.server.cert}"\nkey = "{pki.server.key}"\nclient_ca = "{pki.ca}"\n'
    server, ledger = _serve(_config(tmp_path, baseline_dir, extra=extra), tmp_path)
    with server:
        url = f"https://localhost:{server.running.http_port}/healthz"
        bare = ssl.create_default_context(cafile=str(pki.ca))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _https_get(url, bare)
        with_cert = ssl.create_default_context(cafile=str(pki.ca))
        with_cert.load_cert_chain(pki.client_a.cert, pki.client_a.key)
        assert _https_get(url, with_cert) == 200
    ledger.close()
