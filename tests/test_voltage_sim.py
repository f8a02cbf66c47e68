"""Grid-voltage protection in the simulator: the mode's hysteresis, the street model, the shield's view of the
mode's decision, and a sunny June week of a home on a weak street (examples/weak_street.toml) with real 2024
prices and KNMI weather."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_shield import situations as shield_situations

from dwars.config import BatteryConfig, BoilerConfig, Installation, VoltageConfig, load_config
from dwars.data.scenario import Scenario
from dwars.env.goals import Deadline
from dwars.env.modes import Decision, Mode
from dwars.env.voltage import HighVoltageMode, absorb_decision, connection_voltage_v, street_voltage_v, trips
from dwars.policy.base import Forecasts, Home, State
from dwars.policy.decision_log import DecisionLog, read_records
from dwars.policy.evaluate import evaluate
from dwars.policy.shield import Shield

ROOT = Path(__file__).resolve().parents[1]
T0 = pd.Timestamp("2024-06-24 10:00", tz="UTC")
volts = st.floats(200.0, 270.0)


def configs() -> st.SearchStrategy[VoltageConfig]:
    return st.builds(VoltageConfig, trip_v=st.floats(240.0, 260.0), margin_v=st.floats(0.0, 10.0),
                     hysteresis_v=st.floats(0.1, 10.0), street_base_v=st.floats(200.0, 239.0),
                     street_rise_v=st.floats(0.0, 30.0), rise_v_per_kw=st.floats(0.0, 5.0))


# ------------------------------------------------------------------------------------------ the rules


@given(configs(), st.lists(st.one_of(volts, st.just(math.nan)), max_size=60))
def test_high_voltage_mode_switches_with_hysteresis(cfg: VoltageConfig, series: list[float]) -> None:
    mode = HighVoltageMode(cfg)
    for v in series:
        was = mode.on
        on = mode.update(v)
        assert on == mode.on
        if math.isnan(v):
            assert on == was  # no reading: the state is kept
        elif v >= cfg.act_v:
            assert on  # at or above trip - margin: on
        elif v < cfg.release_v:
            assert not on  # below act - hysteresis: off
        else:
            assert on == was  # in between: kept


@given(configs(), st.lists(st.floats(0.0, 12.0), min_size=1, max_size=30), st.floats(0.5, 10.0))
def test_street_voltage_rises_with_the_sun_from_base_to_base_plus_rise(cfg: VoltageConfig, pv: list[float],
                                                                       peak: float) -> None:
    pv_a = np.asarray(pv)
    v = street_voltage_v(cfg, pv_a, peak)
    assert np.all(v >= cfg.street_base_v - 1e-9) and np.all(v <= cfg.street_base_v + cfg.street_rise_v + 1e-9)
    order = np.argsort(pv_a, kind="stable")
    assert np.all(np.diff(v[order]) >= -1e-9)  # more sun, never a lower voltage
    assert np.allclose(v[pv_a == 0], cfg.street_base_v)
    assert np.allclose(v[pv_a >= peak], cfg.street_base_v + cfg.street_rise_v)


@given(configs(), volts, st.floats(-20.0, 20.0), st.floats(0.0, 20.0))
def test_export_raises_and_import_lowers_the_connection_voltage(cfg: VoltageConfig, street: float, net: float,
                                                                 more_export: float) -> None:
    v = float(connection_voltage_v(cfg, street, net))
    assert v == pytest.approx(street - cfg.rise_v_per_kw * net)
    assert float(connection_voltage_v(cfg, street, net - more_export)) >= v - 1e-9  # exporting more: not lower
    assert bool(trips(cfg, v)) == (v > cfg.trip_v)


@st.composite
def situations(draw: st.DrawFn) -> tuple[Home, State, Forecasts, Decision]:
    """The shield tests' situations (any goal), tipped towards the mode's edge cases, and any decision of a
    controller."""
    h, state, fc = draw(shield_situations(goal_kinds=("endpoint", "night_end")))
    capacity, energy = h.battery.capacity_kwh, state.energy_kwh
    pv, load = np.asarray(fc.pv_kw), np.array(fc.load_kw, dtype=float)
    if draw(st.booleans()):  # a small surplus now: what the shield's conservative forecast may see as a deficit
        load[0] = pv[0] * draw(st.floats(0.5, 1.0))
        fc = dataclasses.replace(fc, load_kw=load)
    if draw(st.booleans()):  # right at what the goals need after this interval (the shield's floor)
        floor = Shield(h)._context(state, fc).required_kwh
        energy = float(np.clip(floor + draw(st.floats(0.0, 0.05)), h.battery.reserve_kwh, capacity))
    mode = draw(st.sampled_from(list(Mode)))
    power = draw(st.floats(0.0, 12.0)) if mode in (Mode.IMPORT, Mode.EXPORT) else 0.0
    decision = Decision(mode, power, "proposed", draw(st.booleans()))
    return h, dataclasses.replace(state, energy_kwh=energy, soc_pct=100 * energy / capacity), fc, decision


@settings(max_examples=400, deadline=None)
@given(situations(), st.floats(0.0, 3.0), volts)
def test_the_shield_lets_the_modes_decision_through(case: tuple[Home, State, Forecasts, Decision],
                                                    taken_kw: float, mean_v: float) -> None:
    """What the shield let through, turned into absorbing the forecast surplus (less what the boiler and the car
    take), breaks no spread, limit or reserve rule: only a goal can make the shield keep the decision it had, and
    where its conservative forecast also sees a surplus a Hold or an export comes through exactly as the mode
    made it."""
    h, s, fc, proposed = case
    shield = Shield(h)
    applied = shield.check(s, fc, proposed).applied
    surplus = float(fc.pv_kw[0] - fc.load_kw[0]) - taken_kw
    absorbed, why, why_nl = absorb_decision(applied, surplus, h.battery.max_charge_kw, mean_v)
    if not why:
        assert absorbed is applied and not why_nl
        return
    assert why_nl and absorbed.curtail_pv == applied.curtail_pv
    again = shield.check(s, fc, absorbed)
    assert {i.rule for i in again.interventions} <= {"endpoint", "night_end"}
    conservative_surplus = shield.pv_factor * fc.pv_kw[0] >= shield.load_factor * fc.load_kw[0]
    if absorbed.mode == Mode.HOLD or (conservative_surplus and applied.mode in (Mode.HOLD, Mode.EXPORT)):
        assert not again.interventions, [i.reason_en for i in again.interventions]
        assert again.applied == absorbed


def test_a_small_surplus_next_to_a_goal_keeps_the_shields_decision() -> None:
    """Why the simulator checks the mode's decision (as the Pi does): 1.0 kW PV against 0.9 kW load is a surplus,
    but the shield's conservative forecast (PV x 0.8, load x 1.25) sees self-consumption discharge, and the
    battery stands right at what the 100 % endpoint needs."""
    h = Home.from_installation(Installation(battery=BatteryConfig(capacity_kwh=10, reserve_pct=20,
                                                                  max_charge_kw=1.0)))
    times = pd.date_range(T0, periods=8, freq="60min")
    price = np.full(8, 0.25)
    fc = Forecasts(times, np.array([1.0] + [0.0] * 7), np.array([0.9] + [0.5] * 7), price * 1000, price,
                   price - 0.1, (Deadline("endpoint", times[2], 100.0),))
    shield = Shield(h)
    need = shield._context(State(T0, 60, 9.0, 90.0), fc).required_kwh
    s = State(T0, 60, need + 1e-3, 10 * (need + 1e-3))
    hold = shield.check(s, fc, Decision(Mode.HOLD, 0.0, "hold")).applied
    assert hold.mode == Mode.HOLD
    absorbed, why, _ = absorb_decision(hold, 0.1, 1.0, 252.0)
    assert absorbed.mode == Mode.MSC and why
    again = shield.check(s, fc, absorbed)
    assert again.applied.mode == Mode.HOLD and [i.rule for i in again.interventions] == ["endpoint"]


# ---------------------------------------------------------------------------------- a sunny June week


def weak_street() -> VoltageConfig:
    cfg = load_config(ROOT / "examples" / "weak_street.toml").voltage
    assert cfg is not None
    return cfg


@pytest.fixture(scope="module")
def sunny_week(home_inst: Installation, make_scenario) -> Scenario:
    """The last week of June 2024 at 15 minutes: five days with a clear noon."""
    return make_scenario(home_inst, "2024-06-24", "2024-07-01", 15)


@pytest.fixture(scope="module")
def boiler_week(home_inst: Installation, sunny_week: Scenario):
    """A home with a boiler on the weak street, the boiler left to its thermostat (no surplus switch): with and
    without high-voltage mode."""
    inst = dataclasses.replace(home_inst, voltage=weak_street(), boiler=BoilerConfig())
    names = ["none", "rule"]
    return (evaluate(inst, sunny_week, names, divert=False),
            evaluate(inst, sunny_week, names, divert=False, voltage_mode=False))


def test_without_the_mode_the_inverter_trips_and_with_it_less_pv_is_lost(boiler_week) -> None:
    mode, plain = boiler_week
    for name in ("none", "rule"):
        m, p = mode.results[name], plain.results[name]
        assert p["hv_mode_hours"] == 0 and not plain.traces[name].flex.hv_mode.any()
        assert p["inverter_trips"] >= 2 and p["pv_lost_to_trips_kwh"] > 2.0 and p["voltage_max_v"] > 253.0
        assert m["hv_mode_hours"] > 5
        assert m["inverter_trips"] < p["inverter_trips"]
        assert m["pv_lost_to_trips_kwh"] < p["pv_lost_to_trips_kwh"] - 1.0
        assert m["violations"] == {"reserve": 0, "endpoint": 0, "night_end": 0}
        assert m["hot_water_unmet_kwh"] == 0
        # The figures come from the trace: lost PV is the PV of the tripped intervals, all of it.
        tr = mode.traces[name]
        assert m["pv_lost_to_trips_kwh"] == pytest.approx(mode.pv_kw[tr.flex.tripped].sum() * 0.25)
        assert np.all(tr.flex.voltage_v[tr.flex.tripped] > weak_street().trip_v)
        assert np.all(tr.flex.voltage_v[~tr.flex.tripped] <= weak_street().trip_v)


def test_the_modes_boiler_comes_on_when_the_battery_is_full(boiler_week) -> None:
    mode, _ = boiler_week
    tr = mode.traces["rule"]
    hv = tr.flex.hv_boost
    starts = np.flatnonzero(hv & ~np.concatenate([[False], hv[:-1]]))
    assert len(starts) >= 2 and mode.results["rule"]["hv_boiler_kwh"] > 3.0
    b = mode.installation.battery
    for i in starts:
        assert tr.flex.hv_mode[i]
        # The battery takes the surplus first: the boiler comes on once it is full or charging at its limit.
        assert tr.energy_kwh[i] >= b.capacity_kwh - 0.05 or tr.charge_kw[i] >= b.max_charge_kw - 0.05
    assert np.all(tr.flex.boost_kw[~hv] == 0)  # no surplus switch here: only the mode boosts
    assert not (hv & ~tr.flex.hv_mode).any()  # and only while it is on


def test_the_decision_log_explains_the_mode_and_the_trips(home_inst: Installation, sunny_week: Scenario,
                                                          tmp_path: Path) -> None:
    inst = dataclasses.replace(home_inst, voltage=weak_street(), boiler=BoilerConfig())
    days = sunny_week.window(sunny_week.start, sunny_week.start + pd.Timedelta(days=3))
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(path) as log:
        result = evaluate(inst, days, ["none"], decision_log=log, divert=False)
    tr = result.traces["none"].flex
    assert tr.tripped.any() and tr.hv_mode.any()
    records = list(read_records(path))
    entries = [(k, r["loads"]["voltage"]) for k, r in enumerate(records) if "voltage" in r.get("loads", {})]
    marked = {k for k, _ in entries}
    assert set(np.flatnonzero(tr.hv_mode | tr.tripped)) <= marked
    for k, v in entries:
        assert v["voltage_v"] == pytest.approx(tr.voltage_v[k], abs=0.05)
        assert v["mode"] == ("on" if tr.hv_mode[k] else "off") and v["tripped"] == bool(tr.tripped[k])
        assert v["reason"] and v["reden"]
        if tr.hv_mode[k]:  # as the Pi writes it: the voltage the home would have caused without the mode
            assert v["without_mode_v"] >= weak_street().release_v - 0.05 and v["boiler"] == bool(tr.hv_boost[k])
    text = " | ".join(v["reason"] for _, v in entries)
    tekst = " | ".join(v["reden"] for _, v in entries)
    assert "high-voltage mode on:" in text and "PV inverter offline:" in text and "boiler on: high voltage" in text
    assert "hogespanningsmodus aan:" in tekst and "omvormer afgeschakeld:" in tekst
    assert all("PV inverter offline" in records[k]["loads"]["reason"] for k in np.flatnonzero(tr.tripped))


def test_the_log_shows_what_the_battery_did_in_the_mode(home_inst: Installation, sunny_week: Scenario,
                                                       tmp_path: Path) -> None:
    """As on the Pi the decision log's ``applied`` is the mode's decision where it changed the controller's: the MPC
    holds its charge for the midday prices, the mode has the battery take what the voltage needs."""
    inst = dataclasses.replace(home_inst, voltage=weak_street())
    days = sunny_week.window(sunny_week.start, sunny_week.start + pd.Timedelta(days=2))
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(path) as log:
        result = evaluate(inst, days, ["mpc"], decision_log=log)
    records = list(read_records(path))
    changed = [(k, r) for k, r in enumerate(records) if r["applied"]["reason"].startswith("high voltage")]
    assert changed
    tr = result.traces["mpc"]
    sign = {"import": 1.0, "export": -1.0}
    for k, r in changed:
        applied, proposed = r["applied"], r["proposed"]
        assert applied["mode"] != "msc" or proposed["mode"] != "msc"
        # the mode only ever moves the battery's power up: less export, or a charge (self-consumption: all of it)
        if applied["mode"] != "msc":
            assert (sign.get(applied["mode"], 0.0) * applied["power_kw"]
                    > sign.get(proposed["mode"], 0.0) * proposed["power_kw"])
        assert r["loads"]["voltage"]["mode"] == "on" and tr.mode[k] == int(Mode[applied["mode"].upper()])
    assert result.results["mpc"]["violations"] == {"reserve": 0, "endpoint": 0, "night_end": 0}


def test_a_grid_voltage_column_replaces_the_street_model(home_inst: Installation, june_15: Scenario) -> None:
    inst = dataclasses.replace(home_inst, voltage=weak_street())
    frame = june_15.frame.copy()
    # A street that sits at 250 V in the evening and night and is low by day: the model's opposite.
    local_hour = frame.index.tz_convert("Europe/Amsterdam").hour
    frame["grid_voltage_v"] = np.where((local_hour >= 19) | (local_hour < 7), 252.0, 235.0)
    given = evaluate(inst, Scenario(frame, june_15.minutes, june_15.meta), ["rule"])
    modelled = evaluate(inst, june_15, ["rule"])
    tr = given.traces["rule"]
    net = tr.import_kw - tr.export_kw
    assert np.allclose(tr.flex.voltage_v, frame["grid_voltage_v"].to_numpy() - weak_street().rise_v_per_kw * net)
    # The mode follows the column: on in the evening and at night, never at noon.
    noon = (local_hour >= 11) & (local_hour < 15)
    assert tr.flex.hv_mode[~noon].any() and not tr.flex.hv_mode[noon].any()
    assert given.results["rule"]["inverter_trips"] == 0
    assert modelled.traces["rule"].flex.voltage_v[noon].max() > 245.0  # the model's sun-driven street


def test_the_mode_never_breaks_the_reserve_or_a_goal_in_a_sunny_week(
        home_inst: Installation, sunny_week: Scenario) -> None:
    inst = dataclasses.replace(home_inst, voltage=weak_street())
    result = evaluate(inst, sunny_week, ["msc", "rule", "random"])
    for name, r in result.results.items():
        assert r["violations"] == {"reserve": 0, "endpoint": 0, "night_end": 0}, name
        assert r["hv_mode_hours"] > 0


def test_a_home_without_voltage_protection_evaluates_as_before(home_inst: Installation, june_15: Scenario) -> None:
    plain = evaluate(home_inst, june_15, ["rule"])
    assert plain.traces["rule"].flex is None  # nothing flexible: the plain simulation, as before
    assert not {k for k in plain.results["rule"] if "voltage" in k or "trip" in k}
    # The flexible-loads path with a street that never comes near the trip level plays exactly the same.
    low = dataclasses.replace(weak_street(), street_base_v=200.0, street_rise_v=0.0)
    quiet = evaluate(dataclasses.replace(home_inst, voltage=low), june_15, ["rule"])
    assert quiet.traces["rule"].flex is not None and quiet.results["rule"]["hv_mode_hours"] == 0
    for key in ("objective_eur", "energy_cost_eur", "import_kwh", "export_kwh", "violations"):
        assert quiet.results["rule"][key] == plain.results["rule"][key], key
    assert "ev_charged_kwh" not in quiet.results["rule"]  # no flexible-loads figures for a home without any
    # A boiler home: the voltage arguments change nothing without [voltage].
    boiler = dataclasses.replace(home_inst, boiler=BoilerConfig())
    a = evaluate(boiler, june_15, ["rule"], voltage_mode=True).results["rule"]
    b = evaluate(boiler, june_15, ["rule"], voltage_mode=False).results["rule"]
    assert a["objective_eur"] == b["objective_eur"] and "inverter_trips" not in a


def test_the_street_needs_a_voltage_or_the_pv(home_inst: Installation, june_15: Scenario) -> None:
    from dwars.env.flex import HomeFlex
    from dwars.errors import DataError

    home = Home.from_installation(dataclasses.replace(home_inst, voltage=weak_street()))
    with pytest.raises(DataError, match="grid_voltage_v"):
        HomeFlex(home, june_15.index, 15)
    with pytest.raises(DataError, match="grid_voltage_v: 3 values for 384 intervals"):
        HomeFlex(home, june_15.index, 15, street_v=np.full(3, 240.0))
    bad = np.full(len(june_15.index), 240.0)
    bad[5] = np.nan
    with pytest.raises(DataError, match="grid_voltage_v: blank"):
        HomeFlex(home, june_15.index, 15, street_v=bad)


def test_dwars_evaluate_prints_what_the_mode_saves_and_costs(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from dwars.cli import main

    config = str(ROOT / "examples" / "weak_street.toml")
    scenario = tmp_path / "june.csv"
    assert main(["scenario", "build", "--config", config, "--prices", "sample:prices_2024.json.gz",
                 "--weather", "sample:knmi_debilt_260_2024_T_Q.csv.gz", "--start", "2024-06-24",
                 "--end", "2024-06-27", "--resolution", "60min", "--model-pv", "--out", str(scenario)]) == 0
    capsys.readouterr()
    out_json = tmp_path / "figures.json"
    assert main(["evaluate", "--config", config, "--scenario", str(scenario), "--controllers", "none,rule",
                 "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "grid voltage" in printed and "PV saved kWh" in printed and "mode cost EUR" in printed
    figures = json.loads(out_json.read_text())["controllers"]
    for name in ("none", "rule"):
        r, w = figures[name], figures[name]["without_voltage_mode"]
        assert w["hv_mode_hours"] == 0 and r["hv_mode_hours"] > 0
        assert w["inverter_trips"] > 0 and w["pv_lost_to_trips_kwh"] > 0
    # With --no-voltage-mode one run: trips are still counted, the mode never starts.
    assert main(["evaluate", "--config", config, "--scenario", str(scenario), "--controllers", "none",
                 "--no-voltage-mode", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "grid voltage (high-voltage mode off)" in printed and "mode cost" not in printed
    none = json.loads(out_json.read_text())["controllers"]["none"]
    assert none["hv_mode_hours"] == 0 and none["inverter_trips"] > 0 and "without_voltage_mode" not in none
