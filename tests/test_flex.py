"""The flexible loads in the evaluation: the boiler on solar surplus and peak shaving, on real 2024 data slices."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dwars.config import BoilerConfig, EvConfig, Installation
from dwars.policy.decision_log import DecisionLog, read_records
from dwars.policy.evaluate import evaluate


@pytest.fixture(scope="module")
def boiler_june(home_inst: Installation, make_scenario):
    inst = dataclasses.replace(home_inst, boiler=BoilerConfig(priority="battery"))
    scenario = make_scenario(inst, "2024-06-03", "2024-06-10", 15)
    auto = dataclasses.replace(home_inst, boiler=BoilerConfig(priority="auto"))
    return (evaluate(inst, scenario, ["none", "rule"], divert=False),
            evaluate(inst, scenario, ["none", "rule"], divert=True),
            evaluate(auto, scenario, ["none", "rule"], divert=True))


def test_the_boiler_on_solar_surplus_saves_money_and_keeps_the_hot_water(boiler_june) -> None:
    plain, diverted, auto = boiler_june
    for name in ("none", "rule"):
        p, d = plain.results[name], diverted.results[name]
        assert auto.results[name]["objective_eur"] < p["objective_eur"]  # sharing the sun never costs more
        assert auto.results[name]["hot_water_unmet_kwh"] == 0
        assert p["boiler_boost_kwh"] == 0 and d["boiler_boost_kwh"] > 5.0
        assert d["objective_eur"] < p["objective_eur"]
        assert d["hot_water_unmet_kwh"] == 0 and p["hot_water_unmet_kwh"] == 0
        assert d["export_kwh"] < p["export_kwh"]  # battery first: the surplus left went into the tank, not the grid
    tank = diverted.traces["rule"].flex.tank_c
    assert tank.max() <= BoilerConfig().boost_c + 1e-6 and tank.max() > BoilerConfig().setpoint_c + 5


def test_battery_first_lets_the_boiler_take_only_what_the_battery_leaves(boiler_june) -> None:
    _, diverted, _ = boiler_june
    tr = diverted.traces["rule"]
    boosting = tr.flex.boost_kw > 0
    assert boosting.any()
    capacity = diverted.installation.battery.capacity_kwh
    max_charge = diverted.installation.battery.max_charge_kw
    # While the boost runs the battery is full, or charging at its limit, or not in self-consumption.
    full_or_busy = ((tr.energy_kwh[boosting] >= capacity - 0.05) | (tr.charge_kw[boosting] >= max_charge - 0.05)
                    | (tr.mode[boosting] != 0))
    # A switch reacts to what it measured: allow the interval in which the battery just filled up.
    assert full_or_busy.mean() > 0.8


def test_boiler_switches_carry_reasons_into_the_decision_log(home_inst: Installation, tmp_path,
                                                             make_scenario) -> None:
    inst = dataclasses.replace(home_inst, boiler=BoilerConfig(), ev=EvConfig())
    scenario = make_scenario(inst, "2024-06-04", "2024-06-06", 60)
    path = tmp_path / "decisions.jsonl"
    with DecisionLog(path) as log:
        evaluate(inst, scenario, ["rule"], decision_log=log)
    records = list(read_records(path))
    assert len(records) == len(scenario.frame)
    loads = [r["loads"] for r in records]
    assert all("ev" in x and "boiler" in x for x in loads)
    reasons = " | ".join(x.get("reason", "") for x in loads)
    assert "boiler on:" in reasons and "EV: " in reasons
    assert any(x["boiler"]["boost_kw"] > 0 for x in loads)


def test_peak_shaving_sheds_the_car_then_uses_the_battery(home_inst: Installation, make_scenario) -> None:
    site = dataclasses.replace(home_inst.site, import_peak_kw=7.0)
    inst = dataclasses.replace(home_inst, site=site, ev=EvConfig(strategy="now"))
    scenario = make_scenario(inst, "2024-01-08", "2024-01-12", 15)
    free = evaluate(dataclasses.replace(inst, site=home_inst.site), scenario, ["rule"])
    capped = evaluate(inst, scenario, ["rule"])
    f, c = free.results["rule"], capped.results["rule"]
    assert f["peak_import_kw"] > 7.0 + 1.0  # without the limit the car and the house pass it
    assert c["intervals_over_peak"] == 0 and c["peak_import_kw"] <= 7.0 + 1e-6
    assert c["violations"]["reserve"] == 0
    reasons = [r for r in capped.traces["rule"].flex.reasons if "peak limit" in r]
    assert reasons and any("EV: " in r and "limited from" in r for r in reasons)
    # The car still gets its energy, later and slower.
    assert c["ev_charged_kwh"] == pytest.approx(f["ev_charged_kwh"], rel=0.1)
    assert np.max(capped.traces["rule"].flex.ev_kw) <= 7.0
