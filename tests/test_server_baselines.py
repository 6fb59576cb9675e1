"""BaselineService on a real loopback server: list, get, activate (recorded write-ahead in the
ledger with the caller as actor; the stream continues on the new baseline)."""

from __future__ import annotations

from contextlib import contextmanager

import grpc
import numpy as np
import pytest
from lineage_audit._generated.lineage_audit.v1 import baselines_pb2
from lineage_audit.client import Client
from lineage_audit.divergence import load_baseline
from lineage_audit.ledger import Ledger
from lineage_audit.server import ServerConfig, ServerThread
from server_fixtures import ENCODER, N, clean_rows, fit_small_baseline, write_server_config


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bl")
    return fit_small_baseline(folder / "first", 11), fit_small_baseline(folder / "second", 12)


@pytest.fixture
def served(baselines, tmp_path):
    first, second = baselines
    path = write_server_config(tmp_path, first)
    text = path.read_text().replace(
        f'baseline = "{first}"', f'baseline = "{first}"\ncandidates = ["{second}"]'
    )
    path.write_text(text)
    config = ServerConfig.from_toml(path)
    ledger = Ledger.open(config.ledger_db, config.ledger_keys)
    with ServerThread(config, ledger=ledger) as server, Client(server.address) as client:
        yield client, ledger
    ledger.close()


def _refused(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_list_and_get_show_both_baselines_and_which_is_active(served, baselines):
    client, _ = served
    first, second = (load_baseline(b) for b in baselines)
    listed = {b.version: b for b in client.list_baselines()}
    assert set(listed) == {first.version, second.version}
    assert listed[first.version].active and not listed[second.version].active
    got = client.baselines_stub.GetBaseline(
        baselines_pb2.GetBaselineRequest(version=second.version), timeout=30
    )
    assert (got.dimension, list(got.window_sizes), got.encoder_id) == (
        second.dimension, [N], ENCODER,
    )  # fmt: skip
    assert got.manifest_sha256 == second.manifest_sha256 and got.asset_class == "news"
    assert client.list_baselines("other") == []


def test_activate_switches_the_stream_and_is_recorded_before_it_takes_effect(served, baselines):
    client, ledger = served
    first, second = (load_baseline(b) for b in baselines)
    rng = np.random.default_rng(3)
    (before,) = list(client.stream("news", [clean_rows(rng, N + N // 2)], encoder_id=ENCODER))
    assert [w.baseline_version for w in before.windows] == [first.version]
    reply = client.activate_baseline("news", second.version, reason="quarterly refit")
    assert reply.baseline.active and reply.baseline.version == second.version
    intent = ledger.entry(reply.ledger_seq)
    predicate = intent.statement()["predicate"]
    assert intent.kind == "intent" and predicate["action"] == "baseline.activate"
    assert predicate["previous"] == first.version and predicate["version"] == second.version
    assert predicate["reason"] == "quarterly refit" and predicate["dropped_rows"] == N // 2
    assert predicate["actor"] == "lineage-audit-server"  # no auth configured: the server's actor
    (after,) = list(client.stream("news", [clean_rows(rng, N)], encoder_id=ENCODER))
    (window,) = after.windows
    assert window.baseline_version == second.version
    assert window.window == 1 and window.start_row == N + N // 2  # the stream continued
    listed = {b.version: b.active for b in client.list_baselines()}
    assert listed == {first.version: False, second.version: True}


def test_activation_errors_name_the_problem(served, baselines):
    client, ledger = served
    size = ledger.size
    code, details = _refused(lambda: client.activate_baseline("news", "bl-unknown"))
    assert code == grpc.StatusCode.NOT_FOUND and "bl-unknown" in details
    second = load_baseline(baselines[1])
    code, details = _refused(lambda: client.activate_baseline("sports", second.version))
    assert code == grpc.StatusCode.NOT_FOUND and "'sports' not served" in details
    code, details = _refused(lambda: client.activate_baseline("", second.version))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "asset_class" in details
    assert ledger.size == size  # refused activations record nothing


@contextmanager
def _serve(config):
    """A server on the config's ledger, and a client of it (the ledger closed after)."""
    ledger = Ledger.open(config.ledger_db, config.ledger_keys)
    try:
        with ServerThread(config, ledger=ledger) as server, Client(server.address) as client:
            yield client, ledger
    finally:
        ledger.close()


def _with_candidate(path, baselines) -> str:
    text = path.read_text()
    first, second = baselines
    path.write_text(
        text.replace(f'baseline = "{first}"', f'baseline = "{first}"\ncandidates = ["{second}"]')
    )
    return text


def test_an_activated_baseline_is_still_active_after_a_restart(baselines, tmp_path):
    """The ledger's last succeeded ``baseline.activate`` is restored at start (the config still
    names the first baseline); the stream continues where it stopped, on the second."""
    first, second = (load_baseline(b) for b in baselines)
    path = write_server_config(tmp_path, baselines[0])
    _with_candidate(path, baselines)
    config = ServerConfig.from_toml(path)
    rng = np.random.default_rng(4)
    with _serve(config) as (client, _):
        list(client.stream("news", [clean_rows(rng, N)], encoder_id=ENCODER))
        client.activate_baseline("news", second.version, reason="quarterly refit")
    with _serve(config) as (client, ledger):
        listed = {b.version: b.active for b in client.list_baselines()}
        assert listed == {first.version: False, second.version: True}
        (reply,) = list(client.stream("news", [clean_rows(rng, N)], encoder_id=ENCODER))
        (window,) = reply.windows
        assert (window.window, window.baseline_version) == (1, second.version)
        run = [e for e in ledger.entries() if e.action == "server.run" and e.kind == "intent"]
        restored = run[-1].statement()["predicate"]["restored_baselines"]
        assert restored == {"news": {"version": second.version, "restored": True}}


def test_a_restart_without_the_activated_baseline_loaded_says_so(baselines, tmp_path, capfd):
    first, second = (load_baseline(b) for b in baselines)
    path = write_server_config(tmp_path, baselines[0])
    original = _with_candidate(path, baselines)
    with _serve(ServerConfig.from_toml(path)) as (client, _):
        client.activate_baseline("news", second.version, reason="try it")
    path.write_text(original)  # the candidate is no longer configured
    with _serve(ServerConfig.from_toml(path)) as (client, _):
        assert [b.version for b in client.list_baselines() if b.active] == [first.version]
    assert f"baseline {second.version} was active before the restart" in capfd.readouterr().err
