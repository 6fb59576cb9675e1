"""Tier 5: the policy, the confidence rule, incident states and the halt hook, over a real
signed SQLite ledger and a real webhook receiver on loopback."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
from incidents_data import halt_evidence, halt_trigger, policy_text, receiver
from lineage_audit import _merkle_verify
from lineage_audit.incidents import (
    ConfidenceInputs,
    HaltHook,
    HaltRefused,
    IncidentError,
    IncidentManager,
    IncidentStore,
    NotAuthorised,
    PolicyError,
    TransitionError,
    Trigger,
    UnknownAsset,
    UnknownIncident,
    compute_confidence,
    parse_policy,
    verify_halt_envelope,
)


@pytest.fixture
def manager(ledger, tmp_path):
    store = IncidentStore(tmp_path / "incidents.db")
    yield IncidentManager(ledger, store, parse_policy(policy_text()))
    store.close()


def _with_webhook(manager: IncidentManager, url: str) -> IncidentManager:
    manager.policy = parse_policy(policy_text(url))
    return manager


def _outcome_of(ledger, intent_seq: int) -> dict:
    for entry in ledger.entries(intent_seq + 1):
        predicate = entry.statement()["predicate"]
        if entry.kind == "outcome" and predicate["intent"]["seq"] == intent_seq:
            return predicate
    raise AssertionError(f"no outcome for intent {intent_seq}")


# --- policy ------------------------------------------------------------------------------------


def test_policy_reads_every_setting():
    policy = parse_policy(policy_text("http://127.0.0.1:8080/halt"))
    news = policy.asset("fx-news")
    assert (news.signal, news.lineage_node) == ("fx-news-sentiment", "dataset:deployer:news-inputs")
    assert news.triggers.tier2_convergence_k == 3 and news.triggers.tier4_discovery_fraction == 0.2
    assert news.halt.enabled and news.halt.authorised == ("token:mro",)
    assert not policy.asset("fx-rates").halt.enabled  # off unless the deployer opts in
    assert len(policy.sha256) == 64


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: t.replace('name = "atlas-fx-test"', "name = "), "policy"),  # not TOML
        (lambda t: t.replace('tier3 = "halt"', 'tier3 = "loud"'),
         "asset_classes.fx-news.triggers.tier3"),
        (lambda t: t.replace("tier2_convergence_k = 3", "tier2_convergence_k = 1"),
         "asset_classes.fx-news.triggers.tier2_convergence_k"),
        (lambda t: t.replace("= 0.2", "= 1.5"),
         "asset_classes.fx-news.triggers.tier4_discovery_fraction"),
        (lambda t: t.replace('webhook = "http://127.0.0.1:9/halt"', ""),
         "asset_classes.fx-news.halt.webhook"),
        (lambda t: t.replace('webhook = "http://127.0.0.1:9/halt"', 'webhook = "file:///x"'),
         "asset_classes.fx-news.halt.webhook"),
        (lambda t: t.replace('authorised = ["token:mro"]', "authorised = []"),
         "asset_classes.fx-news.halt.authorised"),
        (lambda t: t.replace('resolve = ["token:mro"]\n[asset_classes.fx-news.halt]',
                             '[asset_classes.fx-news.halt]'),
         "asset_classes.fx-news.roles.resolve"),
        (lambda t: t.replace("timeout_s = 5", "timeout_s = 5\nretries = 3"),
         "asset_classes.fx-news.halt.retries"),
        (lambda t: t.replace('lineage_node = "dataset:deployer:news-inputs"',
                             'lineage_node = "news-inputs"'),
         "asset_classes.fx-news.lineage_node"),
    ],
)  # fmt: skip
def test_a_malformed_policy_names_the_key(edit, field):
    with pytest.raises(PolicyError) as info:
        parse_policy(edit(policy_text()))
    assert info.value.field == field, str(info.value)


def test_an_unknown_asset_class_names_the_known_ones():
    with pytest.raises(UnknownAsset, match=r"known: \['fx-news', 'fx-rates'\]"):
        parse_policy(policy_text()).asset("fx-bonds")


# --- the confidence rule -------------------------------------------------------------------------


def test_the_rule_step_by_step():
    result = compute_confidence(ConfidenceInputs((0.01, 0.001), (0.02,), re_entry=True,
                                                 opaque_source=True))  # fmt: skip
    steps = {s.name: s.value for s in result.steps}
    x2 = -2 * (math.log(0.001) + math.log(0.02))
    assert steps["tier3"] == 0.001 and steps["tier4"] == 0.02 and steps["fisher"] == x2
    combined = math.exp(-x2 / 2) * (1 + x2 / 2)
    assert steps["combined"] == pytest.approx(combined, rel=1e-12)
    assert result.p == pytest.approx(combined * 0.1 * 0.8, rel=1e-12)
    assert result.confidence == 1 - result.p and result.band == "high"
    assert [s.name for s in result.steps] == ["tier3", "tier4", "fisher", "combined", "re_entry",
                                              "opaque_source", "confidence"]  # fmt: skip


def test_no_evidence_gives_no_confidence():
    result = compute_confidence(ConfidenceInputs())
    assert (result.p, result.confidence, result.band) == (1.0, 0.0, "low")


def test_the_rule_is_reproducible_from_its_recorded_inputs():
    inputs = ConfidenceInputs((0.0004, 0.03), (0.011,), convergence=True)
    recorded = json.loads(json.dumps(compute_confidence(inputs).to_json()))
    again = compute_confidence(ConfidenceInputs.from_json(recorded["inputs"]))
    assert again.to_json() == recorded  # bit for bit, through JSON


def test_the_rule_is_monotone_on_random_evidence():
    rng = np.random.default_rng(20260417)
    flags = ("re_entry", "convergence", "invalid_source", "opaque_source")

    def draw():
        p3 = tuple(float(v) for v in 10 ** -rng.uniform(0, 8, rng.integers(0, 4)))
        q4 = tuple(float(v) for v in 10 ** -rng.uniform(0, 8, rng.integers(0, 3)))
        return ConfidenceInputs(p3, q4, **{f: bool(rng.random() < 0.3) for f in flags})

    def conf(inputs):
        return compute_confidence(inputs).confidence

    for _ in range(2000):
        base = draw()
        c = conf(base)
        stronger = ConfidenceInputs(
            tuple(p * rng.uniform(0, 1) or p for p in base.tier3_window_p),
            tuple(q * rng.uniform(0, 1) or q for q in base.tier4_batch_min_q),
            **{f: getattr(base, f) for f in flags},
        )
        more = ConfidenceInputs(
            (*base.tier3_window_p, float(rng.uniform(1e-6, 1))),
            (*base.tier4_batch_min_q, float(rng.uniform(1e-6, 1))),
            **{f: getattr(base, f) for f in flags},
        )
        flag = flags[rng.integers(len(flags))]
        structural = ConfidenceInputs(
            base.tier3_window_p,
            base.tier4_batch_min_q,
            **{f: getattr(base, f) or f == flag for f in flags},
        )
        for other in (stronger, more, structural):
            assert conf(other) >= c, (base, other)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), float("inf"), True, "0.1"])
def test_a_p_value_out_of_range_is_refused_by_name(bad):
    with pytest.raises(IncidentError) as info:
        ConfidenceInputs(tier3_window_p=(0.1, bad))
    assert info.value.field == "tier3_window_p[1]"


# --- incidents and their states ------------------------------------------------------------------


def test_a_trigger_the_policy_does_not_name_opens_nothing(manager, ledger):
    size = ledger.size
    watch = Trigger(3, "tier3.watch", "fx-news", {"z": 2.2})
    assert manager.consider([watch], halt_evidence(), actor="lineage-audit") is None
    assert ledger.size == size and manager.list() == []


def test_an_incident_is_opened_acknowledged_and_resolved_on_the_ledger(manager, ledger):
    events = []
    manager.listeners.append(events.append)
    incident = manager.consider([halt_trigger()], halt_evidence(), actor="lineage-audit")
    assert incident.state == "open" and incident.signal == "fx-news-sentiment"
    opened = ledger.entry(incident.ledger_seqs[0]).statement()
    assert opened["predicate"]["action"] == "incident.open"
    names = {s["name"]: s["digest"]["sha256"] for s in opened["subject"]}
    assert names[f"incident:{incident.id}"] == incident.digest()
    assert names["evidence:divergence"] == incident.evidence.digests()["divergence"]
    recorded = opened["predicate"]["confidence"]
    assert recorded == json.loads(json.dumps(incident.confidence.to_json()))
    assert (
        compute_confidence(ConfidenceInputs.from_json(recorded["inputs"])).confidence
        == (recorded["confidence"])
    )
    # p3 = 0.00016 (the strongest alerting window), one opaque source
    assert recorded["inputs"]["tier3_window_p"] == [0.008, 0.0005, 0.00016]
    assert recorded["inputs"]["opaque_source"] is True

    manager.acknowledge(incident.id, actor="token:analyst", note="looking")
    done = manager.resolve(incident.id, actor="token:mro", note="vendor feed replaced")
    assert done.state == "resolved"
    assert [(h["from"], h["to"], h["actor"]) for h in done.history] == [
        ("open", "acknowledged", "token:analyst"),
        ("acknowledged", "resolved", "token:mro"),
    ]
    for item in done.history:
        outcome = _outcome_of(ledger, item["intent_seq"])
        assert outcome["status"] == "succeeded" and item["outcome_seq"] > item["intent_seq"]
    assert [e.kind for e in events] == ["opened", "acknowledged", "resolved"]
    assert manager.get(incident.id).to_json() == done.to_json()


def test_transitions_out_of_order_are_refused_and_nothing_is_written(manager, ledger):
    incident = manager.consider([halt_trigger()], halt_evidence(), actor="lineage-audit")
    size, before = ledger.size, manager.get(incident.id).to_json()
    with pytest.raises(TransitionError, match="cannot resolve: it is open; the next step is "
                                              "acknowledge"):  # fmt: skip
        manager.resolve(incident.id, actor="token:mro")
    assert ledger.size == size and manager.get(incident.id).to_json() == before
    manager.acknowledge(incident.id, actor="token:mro")
    with pytest.raises(TransitionError, match="already acknowledged"):
        manager.acknowledge(incident.id, actor="token:mro")
    manager.resolve(incident.id, actor="token:mro")
    size = ledger.size
    for change in (manager.acknowledge, manager.resolve):
        with pytest.raises(TransitionError, match="resolved is final"):
            change(incident.id, actor="token:mro")
    assert ledger.size == size
    with pytest.raises(UnknownIncident) as info:
        manager.acknowledge("INC-20260101-deadbeef", actor="token:mro")
    assert info.value.field == "incident_id"


def test_a_change_by_someone_the_policy_does_not_list_is_refused_and_recorded(manager, ledger):
    incident = manager.consider([halt_trigger()], halt_evidence(), actor="lineage-audit")
    manager.acknowledge(incident.id, actor="token:analyst")
    for actor in ("token:analyst", None):
        size = ledger.size
        with pytest.raises(NotAuthorised, match=r"roles.resolve: \['token:mro'\]"):
            manager.resolve(incident.id, actor=actor, note="closing")
        assert ledger.size == size + 2  # intent and failed outcome
        intent = ledger.entry(size).statement()["predicate"]
        assert intent["actor"] == (actor or "anonymous")
        outcome = _outcome_of(ledger, size)
        assert outcome["status"] == "failed"
        assert outcome["error"]["type"].endswith("NotAuthorised")
    assert manager.get(incident.id).state == "acknowledged"


def test_a_second_trigger_joins_the_active_incident(manager, ledger):
    first = manager.consider([halt_trigger()], halt_evidence(), actor="lineage-audit")
    evidence = halt_evidence()
    lineage = {"findings": [{"finding": "re-entry", "model": "deployer:model"}]}
    evidence = type(evidence)(**{**evidence.__dict__, "lineage": lineage})
    reentry = Trigger(2, "tier2.re-entry", "fx-news", lineage["findings"][0])
    joined = manager.consider([reentry], evidence, actor="lineage-audit")
    assert joined.id == first.id and len(joined.triggers) == 2
    assert joined.confidence.confidence > first.confidence.confidence  # re-entry: p x 0.1
    assert ledger.entry(joined.ledger_seqs[-2]).action == "incident.update"
    assert len(manager.list()) == 1


def test_the_queue_survives_a_restart(manager, ledger, tmp_path):
    incident = manager.consider([halt_trigger()], halt_evidence(), actor="lineage-audit")
    manager.acknowledge(incident.id, actor="token:mro")
    manager.store.close()
    again = IncidentStore(tmp_path / "incidents.db")
    try:
        (found,) = again.list(state="acknowledged")
        assert found.id == incident.id and found.history[0]["actor"] == "token:mro"
    finally:
        again.close()
    manager.store = IncidentStore(tmp_path / "incidents.db")


def test_mismatched_trigger_and_bad_state_filter_are_refused(manager):
    with pytest.raises(IncidentError) as info:
        manager.consider([halt_trigger("fx-rates")], halt_evidence(), actor="x")
    assert info.value.field == "triggers[0].asset_class"
    with pytest.raises(IncidentError, match="expected open, acknowledged or resolved"):
        manager.list(state="closed")
    with pytest.raises(UnknownAsset):
        manager.consider([halt_trigger("fx-bonds")], halt_evidence("fx-bonds"), actor="x")


# --- the halt hook ------------------------------------------------------------------------------


def _rust_verify(body: bytes, keyring) -> None:
    record = keyring.public_keys().to_json()["record"]
    _merkle_verify.verify_envelope(body, base64.b64decode(record["ecdsa-p256"]),
                                   base64.b64decode(record["ml-dsa-65"]))  # fmt: skip


def test_an_authorised_halt_suspends_one_signal_and_delivers_a_signed_webhook(
    manager, ledger, keyring
):
    with receiver() as got:
        _with_webhook(manager, got.url)
        incident = manager.consider([halt_trigger()], halt_evidence(), actor="lineage-audit")
        events = []
        manager.listeners.append(events.append)
        hook = HaltHook(manager)
        assert hook.reliance() == {"fx-news-sentiment": "relied-on", "fx-rates-curve": "relied-on"}
        result = hook.fire("fx-news", actor="token:mro", reason="z >= 3 for 2 windows",
                           incident_id=incident.id)  # fmt: skip
        (body,) = got.bodies
    assert result.delivered and result.webhook_status == 200
    payload = verify_halt_envelope(body, keyring.public_keys())  # Python, both signatures
    _rust_verify(body, keyring)  # and the Rust verifier
    assert (
        got.headers[0]["X-Lineage-Audit-Payload-Type"] == "application/vnd.lineage-audit.halt+json"
    )
    assert payload["signal"] == "fx-news-sentiment" and payload["reliance"] == "suspended"
    assert payload["other_signals_unchanged"] == ["fx-rates-curve"]
    assert payload["ledger"]["intent"] == ledger.entry(result.intent_seq).ref()
    assert hook.reliance() == {"fx-news-sentiment": "suspended", "fx-rates-curve": "relied-on"}
    intent = ledger.entry(result.intent_seq).statement()["predicate"]
    assert (intent["action"], intent["actor"]) == ("halt.fire", "token:mro")
    outcome = _outcome_of(ledger, result.intent_seq)
    assert outcome["status"] == "succeeded" and outcome["result"]["webhook"]["status"] == 200
    assert [e.kind for e in events] == ["halt.fired"] and events[0].detail == payload
    assert manager.get(incident.id).summary()["halted"]

    tampered = json.loads(body)
    changed = json.loads(base64.b64decode(tampered["payload"]))
    changed["signal"] = "fx-rates-curve"
    tampered["payload"] = base64.b64encode(json.dumps(changed).encode()).decode()
    with pytest.raises(IncidentError, match="signature missing or invalid"):
        verify_halt_envelope(json.dumps(tampered).encode(), keyring.public_keys())
    with pytest.raises(ValueError, match="envelope_signature"):
        _rust_verify(json.dumps(tampered).encode(), keyring)


@pytest.mark.parametrize(("asset", "actor", "field"), [
    ("fx-news", "token:analyst", "actor"),  # may acknowledge, may not halt
    ("fx-news", None, "actor"),  # no identity
    ("fx-rates", "token:mro", "halt.enabled"),  # the deployer has not enabled it there
])  # fmt: skip
def test_the_halt_hook_refuses_and_records_an_unauthorised_caller(
    manager, ledger, asset, actor, field
):
    with receiver() as got:
        _with_webhook(manager, got.url)
        hook = HaltHook(manager)
        size = ledger.size
        with pytest.raises(HaltRefused) as info:
            hook.fire(asset, actor=actor, reason="let me")
        assert got.bodies == []  # nothing delivered
    assert info.value.field == field
    assert ledger.size == size + 2
    intent = ledger.entry(size).statement()["predicate"]
    assert (intent["action"], intent["actor"]) == ("halt.fire", actor or "anonymous")
    outcome = _outcome_of(ledger, size)
    assert outcome["status"] == "failed" and outcome["error"]["type"].endswith("HaltRefused")
    assert hook.suspended() == {}


def test_unknown_asset_or_incident_is_refused_before_anything_is_written(manager, ledger):
    hook = HaltHook(manager)
    size = ledger.size
    with pytest.raises(UnknownAsset):
        hook.fire("fx-bonds", actor="token:mro", reason="x")
    with pytest.raises(UnknownIncident):
        hook.fire("fx-news", actor="token:mro", reason="x", incident_id="INC-0-0")
    with pytest.raises(IncidentError, match="non-empty reason"):
        hook.fire("fx-news", actor="token:mro", reason=" ")
    assert ledger.size == size


def test_an_undeliverable_webhook_is_recorded_and_the_signal_stays_suspended(manager, ledger):
    with receiver(status=503) as got:
        _with_webhook(manager, got.url)
        hook = HaltHook(manager)
        result = hook.fire("fx-news", actor="token:mro", reason="halt")
    assert not result.delivered and result.webhook_status == 503
    assert hook.is_suspended("fx-news-sentiment")
    outcome = _outcome_of(ledger, result.intent_seq)
    assert outcome["status"] == "succeeded"
    assert outcome["result"]["webhook"]["error"].startswith("HTTP 503")
    lifted = hook.lift("fx-news", actor="token:mro", reason="vendor fixed")  # port now closed
    assert not lifted.delivered and "delivery failed" in lifted.webhook_error
    assert not hook.is_suspended("fx-news-sentiment")
