"""The EV: its stays at home, the smart charging plan (against an LP optimum), and the year-free end-to-end runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from dwars.config import EvConfig, Installation
from dwars.env.ev import EvCalendar, ev_sessions, plan_ev, target_kwh
from dwars.policy.evaluate import evaluate

TZ = "Europe/Amsterdam"


def _times(start: str, n: int, minutes: int = 60) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(start, tz="UTC"), periods=n, freq=f"{minutes}min")


@pytest.mark.parametrize("day", ["2024-03-30", "2024-10-26"])
def test_sessions_keep_the_local_clock_over_dst(day: str) -> None:
    cfg = EvConfig(arrive_hour=18, depart_hour=7)
    start = pd.Timestamp(day, tz=TZ).tz_convert("UTC")
    sessions = ev_sessions(cfg, start, start + pd.Timedelta(days=3), TZ)
    for s in sessions:
        assert s.arrive.tz_convert(TZ).hour == 18 and s.depart.tz_convert(TZ).hour == 7
    # The night of the clock change is one hour shorter (March) or longer (October) than 13 hours.
    lengths = {s.arrive.tz_convert(TZ).date().isoformat(): (s.depart - s.arrive) / pd.Timedelta(hours=1)
               for s in sessions}
    assert lengths[day] == (12 if day.endswith("03-30") else 14)


@pytest.mark.parametrize("minutes", [15, 60])
def test_calendar_marks_whole_intervals_at_home(minutes: int) -> None:
    cfg = EvConfig(arrive_hour=18, depart_hour=7)
    times = pd.date_range(pd.Timestamp("2024-06-03", tz=TZ), periods=48 * 60 // minutes,
                          freq=f"{minutes}min").tz_convert("UTC")
    cal = EvCalendar.build(cfg, times, minutes, TZ)
    local_hours = times.tz_convert(TZ).hour
    expected = (local_hours >= 18) | (local_hours < 7)
    assert np.array_equal(cal.plugged, np.asarray(expected))
    assert int(cal.arrives.sum()) == 2  # two evenings; the first morning's stay began before the series
    first_evening = int(np.argmax(cal.arrives))
    assert times[first_evening].tz_convert(TZ).hour == 18
    assert times[cal.depart_index[first_evening]].tz_convert(TZ).hour == 7


def _lp_cost(cfg: EvConfig, need_ac_kwh: float, dt: float, imp: np.ndarray, exp: np.ndarray,
             surplus: np.ndarray) -> float:
    """Cheapest cost of charging ``need_ac_kwh`` without a minimum power: surplus part s and grid part g per
    interval, s <= surplus, s + g <= max (an independent LP)."""
    n = len(imp)
    c = np.concatenate([exp, imp]) * dt
    a_ub = np.hstack([np.eye(n), np.eye(n)])
    res = linprog(c, A_ub=a_ub, b_ub=np.full(n, cfg.charger_max_kw),
                  A_eq=np.full((1, 2 * n), dt), b_eq=[need_ac_kwh],
                  bounds=[(0, s) for s in surplus] + [(0, None)] * n, method="highs")
    assert res.success
    return float(res.fun)


def _plan_cost(power: np.ndarray, dt: float, imp: np.ndarray, exp: np.ndarray, surplus: np.ndarray) -> float:
    own = np.minimum(power, surplus)
    return float(dt * np.sum(exp * own + imp * (power - own)))


@settings(max_examples=60, deadline=None)
@given(st.integers(4, 12), st.floats(0.5, 30.0), st.data())
def test_plan_without_minimum_power_is_the_lp_optimum(n: int, need_kwh: float, data: st.DataObject) -> None:
    imp = np.array(data.draw(st.lists(st.floats(0.1, 0.5), min_size=n, max_size=n)))
    exp = imp - np.array(data.draw(st.lists(st.floats(0.1, 0.2), min_size=n, max_size=n)))  # export < import
    surplus = np.array(data.draw(st.lists(st.floats(-2.0, 6.0), min_size=n, max_size=n)))
    cfg = EvConfig(capacity_kwh=100, charger_min_kw=0.0, charger_max_kw=7.0, efficiency=1.0, target_pct=100)
    need = min(need_kwh, 7.0 * (n - 1) - 0.01)
    plan = plan_ev(cfg, cfg.capacity_kwh - need, 1.0, _times("2024-06-03 20:00", n), imp, exp, surplus, TZ)
    usable = np.clip(surplus, 0, None) * 0.8  # the planner counts on 80 % of the forecast surplus
    assert plan.power_kw.sum() == pytest.approx(need, abs=1e-6)
    assert _plan_cost(plan.power_kw, 1.0, imp, exp, usable) == pytest.approx(
        _lp_cost(cfg, need, 1.0, imp, exp, usable), abs=1e-6)


@settings(max_examples=80, deadline=None)
@given(st.integers(3, 16), st.floats(0.5, 40.0), st.sampled_from([0.25, 1.0]), st.data())
def test_plan_power_is_zero_or_within_the_charger_range_and_meets_the_need(n: int, need_kwh: float, dt: float,
                                                                           data: st.DataObject) -> None:
    imp = np.array(data.draw(st.lists(st.floats(0.05, 0.6), min_size=n, max_size=n)))
    exp = imp - 0.12
    surplus = np.array(data.draw(st.lists(st.floats(-1.0, 8.0), min_size=n, max_size=n)))
    cfg = EvConfig(capacity_kwh=80, charger_min_kw=4.1, charger_max_kw=11.0, efficiency=0.9, target_pct=100)
    car = cfg.capacity_kwh - need_kwh
    plan = plan_ev(cfg, car, dt, _times("2024-06-03 20:00", n), imp, exp, surplus, TZ)
    p = plan.power_kw
    need_ac = need_kwh / cfg.efficiency
    # 0 or within the charger's range; below its minimum only where the car is full within the interval (it stops).
    fills_up = np.cumsum(p) * dt >= need_ac - 1e-9
    assert np.all((p == 0) | ((p >= cfg.charger_min_kw - 1e-9) | fills_up) & (p <= cfg.charger_max_kw + 1e-9))
    if need_ac <= cfg.charger_max_kw * dt * (n - 1):
        assert p.sum() * dt >= need_ac - 1e-6  # the target is planned for
        assert p.sum() * dt <= need_ac + cfg.charger_min_kw * dt + 1e-6  # at most one minimum step too much
    else:
        assert p[0] == pytest.approx(min(cfg.charger_max_kw, need_ac / dt))  # no time to lose: full power now
    assert plan.reason.startswith("EV: ")


def test_plan_waits_for_the_cheap_hours_and_says_when() -> None:
    cfg = EvConfig(capacity_kwh=60, charger_min_kw=4.1, charger_max_kw=11.0, efficiency=0.9, target_pct=80)
    imp = np.array([0.40, 0.38, 0.30, 0.22, 0.21, 0.25, 0.35])
    times = _times("2024-01-10 17:00", 7)  # 18:00 local
    plan = plan_ev(cfg, target_kwh(cfg) - 9.0, 1.0, times, imp, imp - 0.1, np.zeros(7), TZ)
    assert plan.now_kw == 0
    assert plan.power_kw[4] == pytest.approx(10.0) and plan.power_kw[3] == 0  # 10 kWh AC: all in the cheapest hour
    assert "waiting" in plan.reason and "next from 22:00" in plan.reason and "before 01:00" in plan.reason


def test_plan_takes_solar_surplus_first() -> None:
    cfg = EvConfig(capacity_kwh=60, charger_min_kw=1.4, charger_max_kw=7.4, phases=1, efficiency=1.0,
                   target_pct=80)
    imp = np.full(6, 0.30)
    surplus = np.array([5.0, 5.0, 0, 0, 0, 0])
    plan = plan_ev(cfg, target_kwh(cfg) - 8.0, 1.0, _times("2024-06-03 10:00", 6), imp, imp - 0.25, surplus, TZ)
    assert plan.power_kw[:2] == pytest.approx([4.0, 4.0])  # 80 % of the forecast surplus
    assert "solar surplus" in plan.reason


def test_unknown_prices_are_used_only_when_the_known_ones_cannot_cover_the_need() -> None:
    cfg = EvConfig(capacity_kwh=60, charger_min_kw=0.0, charger_max_kw=11.0, efficiency=1.0, target_pct=80)
    imp = np.array([0.30, 0.35])  # two known hours of six
    plan = plan_ev(cfg, target_kwh(cfg) - 15.0, 1.0, _times("2024-01-10 10:00", 6), imp, imp - 0.1, np.zeros(6),
                   TZ)
    assert plan.power_kw[:2] == pytest.approx([11.0, 4.0])


@pytest.fixture(scope="module")
def ev_week(home_inst: Installation, make_scenario):
    inst = dataclasses.replace(home_inst, ev=EvConfig())
    scenario = make_scenario(inst, "2024-01-08", "2024-01-15", 15)
    smart = evaluate(inst, scenario, ["none", "rule"], ev_strategy="smart")
    plain = evaluate(inst, scenario, ["none", "rule"], ev_strategy="now")
    without = evaluate(home_inst, scenario, ["none", "rule"])
    return smart, plain, without


def test_smart_charging_costs_less_than_plain_charging_on_a_real_january_week(ev_week) -> None:
    smart, plain, _ = ev_week
    for name in ("none", "rule"):
        s, p = smart.results[name], plain.results[name]
        assert s["ev_missed_departures"] == 0 and p["ev_missed_departures"] == 0
        assert s["ev_charged_kwh"] == pytest.approx(p["ev_charged_kwh"], rel=0.05)
        assert s["energy_cost_eur"] < p["energy_cost_eur"] - 1.0  # a winter week: evening peak vs night
        assert s["violations"] == {"reserve": 0, "endpoint": 0, "night_end": 0} or name == "none"
    reasons = [r for r in smart.traces["rule"].flex.reasons if r]
    assert any("cheapest" in r for r in reasons) and any("waiting" in r for r in reasons)


def test_the_battery_never_discharges_into_the_car(ev_week) -> None:
    smart, _, without = ev_week
    tr = smart.traces["rule"]
    ev = tr.flex.ev_kw
    load = smart.scenario.frame["load_kw"].to_numpy()
    deficit = np.maximum(load - smart.pv_kw, 0.0)
    charging = ev > 0
    assert charging.any()
    # While the car charges, the battery gives at most the house's own deficit (self-consumption or a decided export
    # never larger than what the rule decided without a car).
    assert np.all(tr.discharge_kw[charging] <= np.maximum(deficit[charging], tr.power_kw[charging]) + 1e-9)
    # The battery's own saving is the same with and without the car (it neither feeds the car nor is blocked by it).
    saving_with = smart.results["none"]["energy_cost_eur"] - smart.results["rule"]["energy_cost_eur"]
    saving_without = without.results["none"]["energy_cost_eur"] - without.results["rule"]["energy_cost_eur"]
    assert saving_with == pytest.approx(saving_without, abs=0.5)
