"""`lineage-audit serve` as a real child process on loopback, driven by `lineage_audit.client`:
alerts arrive on WatchAlerts in order and their ledger records verify with the Rust extension;
a SIGKILL under load loses no verified state; a graceful stop records the server's run."""

from __future__ import annotations

import json
import threading
import urllib.request

import grpc
import numpy as np
import pytest
from lineage_audit import _merkle_verify
from lineage_audit.client import Client
from lineage_audit.divergence.series import read_series
from lineage_audit.ledger import Ledger, load_keyring, verify_ledger
from lineage_audit.ledger.keys import mldsa_public_bytes, spki_der
from lineage_audit.server.process import ServerProcess
from server_fixtures import ENCODER, N, clean_rows, fit_small_baseline, shifted_rows
from server_fixtures import write_server_config as _config

WATCH, HALT = 2, 3  # common.proto Level values


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    return fit_small_baseline(tmp_path_factory.mktemp("bl") / "baseline")


def _public_keys_json(folder) -> bytes:
    return json.dumps(load_keyring(folder / "keys").public_keys().to_json()).encode()


def _entry_statement(entry) -> dict:
    import base64

    return json.loads(base64.b64decode(json.loads(entry.envelope)["payload"]))


def test_alerts_arrive_in_order_and_verify_with_the_rust_extension(baseline_dir, tmp_path):
    with ServerProcess(_config(tmp_path, baseline_dir), log=tmp_path / "server.log") as server:
        client = Client(server.address)
        watch = client.watch_alerts(["news"])  # returns once subscribed
        received: list = []

        def read():
            for alert in watch:
                received.append(alert)
                if alert.after == HALT:
                    return

        reader = threading.Thread(target=read)
        reader.start()
        rng = np.random.default_rng(5)

        def feed(make, windows, who):
            with Client(server.address) as conn:
                batches = [make(rng_i, N // 2) for rng_i in [rng] * (2 * windows)]
                return [r for r in conn.stream("news", batches, encoder_id=ENCODER)], who

        clean, _ = feed(clean_rows, 3, "a")
        shifted, _ = feed(shifted_rows, 4, "b")
        reader.join(timeout=120)
        assert not reader.is_alive(), "halt alert never arrived"
        watch.cancel()
        levels = [w.level for r in clean + shifted for w in r.windows]
        assert levels[:3] == ["ok"] * 3 and "halt" in levels[3:]
        assert [a.after for a in received] == [WATCH, HALT]
        assert received[0].window == 3 and received[1].window == 5  # halt after N=3 windows

        checkpoint = client.checkpoint(create=True)
        pinned = _public_keys_json(tmp_path)
        for alert in received:
            proof = client.inclusion_proof(alert.ledger_seq, checkpoint.tree_size)
            verdict = _merkle_verify.verify_tlog_proof(proof.tlog_proof, pinned)
            assert verdict["valid"], verdict
            (entry,) = client.entries(alert.ledger_seq, alert.ledger_seq + 1)
            assert entry.leaf_hash == proof.leaf_hash
            predicate = _entry_statement(entry)["predicate"]
            assert predicate["action"] == f"alert.{'watch' if alert.after == WATCH else 'halt'}"
            assert predicate["window"] == alert.window
        # a proof of another leaf is not accepted for this one (the check can fail)
        wrong = client.inclusion_proof(received[0].ledger_seq, checkpoint.tree_size)
        _origin, size, root = _checkpoint_root(checkpoint.signed_note, tmp_path)
        assert _merkle_verify.verify_inclusion(
            wrong.leaf_hash, received[0].ledger_seq, size, list(wrong.hashes), root
        )
        assert not _merkle_verify.verify_inclusion(
            wrong.leaf_hash, received[1].ledger_seq, size, list(wrong.hashes), root
        )
        with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=30) as reply:
            metrics = reply.read().decode()
        assert 'lineage_audit_alerts_total{asset="news",level="halt"} 1.0' in metrics
        client.close()
        assert server.terminate() == 0
    with Ledger.open(tmp_path / "ledger.db", read_only=True) as ledger:
        actions = [e.statement()["predicate"] for e in ledger.entries()]
    assert actions[0]["action"] == "server.run" and actions[-1]["action"] == "server.run"
    assert actions[-1]["status"] == "succeeded"
    assert actions[-1]["result"]["news"]["windows"] == 7


def _checkpoint_root(note: str, folder) -> tuple[str, int, bytes]:
    keys = load_keyring(folder / "keys").public_keys()
    return _merkle_verify.verify_checkpoint(
        note, keys.checkpoint_name, spki_der(keys.checkpoint_ecdsa),
        mldsa_public_bytes(keys.checkpoint_mldsa),
    )  # fmt: skip


def test_kill_9_under_load_then_restart_loses_no_verified_state(baseline_dir, tmp_path):
    config = _config(tmp_path, baseline_dir)
    errors: list[grpc.StatusCode] = []
    answers: list = []
    stop = threading.Event()

    def load(server: ServerProcess, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with Client(server.address, timeout=30) as conn:
            while not stop.is_set():
                try:
                    for reply in conn.stream(
                        "news", [shifted_rows(rng, N // 4) for _ in range(8)], encoder_id=ENCODER
                    ):
                        answers.append(reply)
                except grpc.RpcError as exc:
                    errors.append(exc.code())
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        return

    server = ServerProcess(config, log=tmp_path / "server.log").start()
    threads = [threading.Thread(target=load, args=(server, s)) for s in range(4)]
    for t in threads:
        t.start()
    while sum(len(a.windows) for a in answers) < 12:  # under load: windows being scored
        threads[0].join(timeout=0.05)
    server.kill()
    for t in threads:
        t.join(timeout=60)
    stop.set()
    assert not any(t.is_alive() for t in threads)
    assert set(errors) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    assert grpc.StatusCode.UNAVAILABLE in errors
    # every answer a client got is a window on disk with the same numbers
    series = read_series(tmp_path / "series").to_pylist()
    on_disk = {row["window"]: row for row in series}
    for window in (w for a in answers for w in a.windows):
        assert window.window in on_disk
        assert on_disk[window.window]["mmd2"] == pytest.approx(window.mmd2, rel=1e-12)
    assert sorted(on_disk) == list(range(len(on_disk)))  # no gap, no half-written window
    public = load_keyring(tmp_path / "keys").public_keys()
    assert verify_ledger(tmp_path / "ledger.db", public).valid

    with ServerProcess(config, log=tmp_path / "server2.log") as again:
        with Client(again.address) as conn:
            rng = np.random.default_rng(99)
            (reply,) = conn.stream("news", [shifted_rows(rng, N)], encoder_id=ENCODER)
        (window,) = reply.windows
        assert window.window == len(on_disk)  # the stream resumes after the last window
        assert window.start_row == max(r["end_row"] for r in series)
        assert window.level == "halt"  # a latched halt survives the crash
    assert verify_ledger(tmp_path / "ledger.db", public).valid
    with Ledger.open(tmp_path / "ledger.db", read_only=True) as ledger:
        runs = [
            (e.kind, e.statement()["predicate"])
            for e in ledger.entries()
            if e.statement()["predicate"]["action"] == "server.run"
        ]
    # first run: intent only (killed); second run: intent (with where it resumed) + outcome
    assert [kind for kind, _ in runs] == ["intent", "intent", "outcome"]
    resumed = runs[1][1]["resumed"]["news"]
    assert resumed["windows"] == len(on_disk)
    # Every acknowledged row after the last window on disk was replayed from the journal.
    # On top may come batches the server took whose replies never arrived: at most the 8
    # batches of N/4 rows of each of the 4 clients' open streams.
    acknowledged = len(answers) * (N // 4)
    after_last_window = acknowledged - max(r["end_row"] for r in series)
    assert after_last_window <= resumed["journal"]["replayed_rows"] <= after_last_window + 8 * N
    # ...and counted: the first window after the restart took them before the new rows.
    assert (
        resumed["journal"]["stream_row"] == window.start_row + resumed["journal"]["replayed_rows"]
    )
    assert reply.pending_rows == resumed["journal"]["replayed_rows"]
    assert runs[2][1]["status"] == "succeeded"


def test_the_server_serves_the_browser_verifier_at_verify(baseline_dir, tmp_path):
    from lineage_audit.server.verify_page import DEFAULT_PAGE

    config = _config(tmp_path, baseline_dir)
    with (
        ServerProcess(config, log=tmp_path / "server.log") as server,
        urllib.request.urlopen(f"{server.http_url}/verify", timeout=30) as reply,
    ):
        body, csp = reply.read(), reply.headers["Content-Security-Policy"]
    assert body == DEFAULT_PAGE.read_bytes()  # the page `make setup` built, as built
    assert "default-src 'none'" in csp and "connect-src" not in csp
