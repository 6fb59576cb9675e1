"""Alert rules as state machines, and halts on real windows through the monitor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lineage_audit.divergence import (
    AlertState,
    ConsecutiveRule,
    CusumRule,
    InputError,
    KOfLRule,
    Level,
    WatchRule,
    parse_halt_rule,
)
from lineage_audit.divergence.rules import measure_arl0


def _levels(state: AlertState, zs, effect=1.0):
    out = []
    for i, z in enumerate(zs):
        state.step(i, z, effect)
        out.append(state.level.value)
    return out


def test_consecutive_rule_halts_after_exactly_n_windows():
    state = AlertState("a", WatchRule(), ConsecutiveRule(n=3))
    assert _levels(state, [0.1, 3.5, 3.2, 3.7, 0.0]) == ["ok", "watch", "watch", "halt", "halt"]


def test_a_single_spike_only_watches():
    state = AlertState("a", WatchRule(), ConsecutiveRule(n=3))
    assert _levels(state, [0.0, 3.7, 0.2, 3.7, 3.7, -1.0]) == [
        "ok", "watch", "ok", "watch", "watch", "ok",
    ]  # fmt: skip


def test_watch_needs_the_minimum_effect():
    state = AlertState("a", WatchRule(2.0, min_effect=0.05), ConsecutiveRule())
    assert state.step(0, 2.5, 0.01) is None and state.level is Level.OK
    transition = state.step(1, 2.5, 0.06)
    assert transition.after is Level.WATCH and "0.06" in transition.reason


def test_halt_latches_until_reset():
    state = AlertState("a", WatchRule(), ConsecutiveRule(n=2))
    _levels(state, [3.5, 3.5])
    assert state.level is Level.HALT
    assert state.step(2, -2.0, 0.0) is None  # stays halted however clean the next window is
    transition = state.reset(3, "reviewed by risk officer")
    assert (transition.before, transition.after) == (Level.HALT, Level.OK)
    assert _levels(state, [3.5]) == ["watch"]  # the rule starts afresh after the reset


def test_k_of_l_and_cusum():
    state = AlertState("a", WatchRule(), KOfLRule(k=2, l=4))
    assert _levels(state, [3.1, 0, 0, 3.1]) == ["watch", "ok", "ok", "halt"]
    state = AlertState("a", WatchRule(), KOfLRule(k=2, l=3))
    assert _levels(state, [3.1, 0, 0, 3.1]) == ["watch", "ok", "ok", "watch"]
    cusum = CusumRule(k=0.5, h=4.0)
    # S: 1.5, 3.0, 4.5 -> halt on the third window of z = 2 (which never watches at 3 sigma)
    assert [cusum.update(z) for z in (2.0, 2.0, 2.0)] == [False, False, True]
    cusum.reset()
    assert cusum.update(-math.inf) is False and cusum.update(4.4) is False  # -inf resets to 0


def test_rule_parsing_and_errors():
    assert parse_halt_rule("consecutive:5").to_json() == {"kind": "consecutive", "n": 5, "z": 3.0}
    assert parse_halt_rule("k-of-l:3/5").to_json()["l"] == 5
    assert parse_halt_rule("cusum:0.5/5").to_json() == {"kind": "cusum", "k": 0.5, "h": 5.0}
    with pytest.raises(InputError, match="consecutive:N"):
        parse_halt_rule("sometimes")
    with pytest.raises(InputError, match="k <= l"):
        KOfLRule(k=4, l=3)


def test_arl0_measurement_counts_windows_and_false_halts():
    rng = np.random.default_rng(0)
    # z iid N(0,1): the consecutive-1 rule at z >= 1 halts with p = 0.1587 per window
    streams = [iter(rng.standard_normal(1000)) for _ in range(400)]
    estimate = measure_arl0(ConsecutiveRule(n=1, z_threshold=1.0), streams)
    assert estimate.halts == 400
    assert estimate.estimate == pytest.approx(1 / 0.1587, rel=0.15)
    assert estimate.lower_95 < estimate.estimate
    none = measure_arl0(ConsecutiveRule(n=3), [iter([0.0] * 100)])
    assert none.halts == 0 and math.isinf(none.estimate)
    assert none.lower_95 == pytest.approx(100 / 2.9957, rel=1e-3)
