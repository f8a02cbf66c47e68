"""Reference controllers: no battery (HOLD, never curtails), plain MSC, and seeded uniformly random actions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dwars.config import BatteryConfig, Installation
from dwars.env.dispatch import simulate_interval
from dwars.env.modes import ACTIONS, N_ACTIONS, Mode, decision_to_action
from dwars.policy.base import Forecasts, Home, State
from dwars.policy.simple import MscController, NoBatteryController, RandomController

START = pd.Timestamp("2024-06-03 10:00", tz="UTC")


def home() -> Home:
    return Home.from_installation(Installation(battery=BatteryConfig(max_charge_kw=4.0, max_discharge_kw=3.0)))


def state(energy_kwh: float = 5.0) -> State:
    return State(START, 15, energy_kwh, 10.0 * energy_kwh)


def forecasts(export_eur: float = 0.10, pv_kw: float = 3.0, load_kw: float = 0.5, horizon: int = 4) -> Forecasts:
    times = pd.date_range(START, periods=horizon, freq="15min")
    return Forecasts(
        times=times,
        pv_kw=np.full(horizon, pv_kw),
        load_kw=np.full(horizon, load_kw),
        epex_eur_per_mwh=np.full(horizon, 1000 * export_eur),
        import_price_eur_per_kwh=np.full(horizon, 0.25),
        export_price_eur_per_kwh=np.full(horizon, export_eur),
    )


def test_names() -> None:
    h = home()
    assert [c(h).name for c in (NoBatteryController, MscController, RandomController)] == ["none", "msc", "random"]
    assert not any(c.uses_actuals for c in (NoBatteryController, MscController, RandomController))


def test_no_battery_holds_and_never_curtails() -> None:
    h = home()
    decision = NoBatteryController(h).decide(state(), forecasts(export_eur=-0.05))
    assert decision.mode == Mode.HOLD and decision.reason == "no battery"
    assert decision.power_kw == 0.0 and not decision.curtail_pv
    # Played out: the battery does nothing and all PV is used or exported, even at a negative price.
    r = simulate_interval(5.0, decision.mode, decision.power_kw, 3.0, 0.5, 0.25, -0.05, 0.25, h.battery, 17.0,
                          decision.curtail_pv)
    assert r.energy_kwh == 5.0 and r.charge_kw == 0.0 and r.discharge_kw == 0.0
    assert r.pv_used_kw == pytest.approx(3.0) and r.export_kw == pytest.approx(2.5) and r.curtailed_kw == 0.0


def test_msc_is_always_plain_self_consumption() -> None:
    controller = MscController(home())
    for export_eur in (-0.20, 0.0, 0.10, 0.60):
        for pv_kw, load_kw in ((3.0, 0.5), (0.0, 1.0), (0.0, 0.0)):
            decision = controller.decide(state(), forecasts(export_eur, pv_kw, load_kw))
            assert decision.mode == Mode.MSC and decision.reason == "self-consumption"
            assert not decision.curtail_pv and decision.power_kw == 0.0


def draws(controller: RandomController, n: int) -> list[int]:
    b = controller.home.battery
    return [decision_to_action(controller.decide(state(), forecasts()), b.max_charge_kw, b.max_discharge_kw)
            for _ in range(n)]


def test_random_is_seeded_reproducible_and_resets() -> None:
    h = home()
    first = draws(RandomController(h, seed=7), 200)
    assert first == draws(RandomController(h, seed=7), 200)
    assert first != draws(RandomController(h, seed=8), 200)
    c = RandomController(h, seed=7)
    draws(c, 13)
    c.reset()
    assert draws(c, 200) == first


def test_random_covers_all_actions_uniformly() -> None:
    h = home()
    got = np.array(draws(RandomController(h, seed=1), 5000))
    counts = np.bincount(got, minlength=N_ACTIONS)
    assert (counts > 0).all() and len(counts) == N_ACTIONS == len(ACTIONS)
    # Uniform: each action n/N times, within 4.5 binomial standard deviations (a few per 10^5 runs exceed it).
    expected = len(got) / N_ACTIONS
    sd = np.sqrt(len(got) * (1 / N_ACTIONS) * (1 - 1 / N_ACTIONS))
    assert np.abs(counts - expected).max() < 4.5 * sd


def test_random_decisions_are_valid_requests_at_nominal_power() -> None:
    h = home()
    c = RandomController(h, seed=3)
    for _ in range(300):
        d = c.decide(state(), forecasts())
        assert d.reason.startswith("random action ")
        if d.mode == Mode.IMPORT:
            assert 0 < d.power_kw <= h.battery.max_charge_kw
        elif d.mode == Mode.EXPORT:
            assert 0 < d.power_kw <= h.battery.max_discharge_kw
        else:
            assert d.power_kw == 0.0


def test_every_decision_has_a_reason() -> None:
    h = home()
    for controller in (NoBatteryController(h), MscController(h), RandomController(h, seed=0)):
        for _ in range(50):
            assert controller.decide(state(), forecasts()).reason.strip()
