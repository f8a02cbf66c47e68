"""Battery step and site balance: energy conservation, bounds and limits, by property-based tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwars.config import BatteryConfig
from dwars.env.battery import Battery, battery_step, site_flows

capacities = st.floats(1.0, 40.0)
fractions = st.floats(0.0, 1.0)
powers = st.floats(-30.0, 30.0)
limits = st.floats(0.5, 15.0)
efficiencies = st.floats(0.7, 1.0)
steps = st.sampled_from([0.25, 1.0])


@st.composite
def cases(draw: st.DrawFn) -> dict[str, float]:
    capacity = draw(capacities)
    floor = capacity * draw(st.floats(0.0, 0.9))
    energy = floor + (capacity - floor) * draw(fractions)
    return {
        "energy_kwh": energy,
        "power_kw": draw(powers),
        "dt_h": draw(steps),
        "capacity_kwh": capacity,
        "floor_kwh": floor,
        "max_charge_kw": draw(limits),
        "max_discharge_kw": draw(limits),
        "efficiency_one_way": draw(efficiencies),
    }


def step(case: dict[str, float]):
    c = dict(case)
    return battery_step(c.pop("energy_kwh"), c.pop("power_kw"), c.pop("dt_h"), **c)


@given(cases())
def test_energy_is_conserved(case: dict[str, float]) -> None:
    r = step(case)
    eta, dt = case["efficiency_one_way"], case["dt_h"]
    expected = case["energy_kwh"] + eta * r.charge_kw * dt - r.discharge_kw * dt / eta
    assert r.energy_kwh == pytest.approx(expected, abs=1e-9)
    # What goes in on the AC side = what is stored + what is lost.
    ac_in = (r.charge_kw - r.discharge_kw) * dt
    assert ac_in == pytest.approx(r.energy_kwh - case["energy_kwh"] + r.loss_kwh, abs=1e-9)
    assert r.loss_kwh >= -1e-12


@given(cases())
def test_bounds_and_limits_hold(case: dict[str, float]) -> None:
    r = step(case)
    assert case["floor_kwh"] - 1e-9 <= r.energy_kwh <= case["capacity_kwh"] + 1e-9
    assert 0 <= r.charge_kw <= case["max_charge_kw"] + 1e-12
    assert 0 <= r.discharge_kw <= case["max_discharge_kw"] + 1e-12
    assert r.charge_kw == 0 or r.discharge_kw == 0


@given(cases())
def test_request_is_met_when_feasible_and_never_exceeded(case: dict[str, float]) -> None:
    r = step(case)
    p = case["power_kw"]
    if p >= 0:
        assert r.charge_kw <= p + 1e-12
        room = (case["capacity_kwh"] - case["energy_kwh"]) / (case["efficiency_one_way"] * case["dt_h"])
        assert r.charge_kw == pytest.approx(min(p, case["max_charge_kw"], room), abs=1e-9)
    else:
        assert r.discharge_kw <= -p + 1e-12
        room = (case["energy_kwh"] - case["floor_kwh"]) * case["efficiency_one_way"] / case["dt_h"]
        assert r.discharge_kw == pytest.approx(min(-p, case["max_discharge_kw"], room), abs=1e-9)


@settings(max_examples=50)
@given(st.lists(cases(), min_size=1, max_size=20))
def test_vectorised_equals_scalar(batch: list[dict[str, float]]) -> None:
    arrays = {k: np.array([c[k] for c in batch]) for k in batch[0] if k != "dt_h"}
    dt = batch[0]["dt_h"]
    vec = battery_step(arrays.pop("energy_kwh"), arrays.pop("power_kw"), dt, **arrays)
    for i, c in enumerate(batch):
        one = step({**c, "dt_h": dt})
        assert vec.energy_kwh[i] == pytest.approx(one.energy_kwh, abs=1e-12)
        assert vec.charge_kw[i] == pytest.approx(one.charge_kw, abs=1e-12)


def test_below_floor_may_charge_but_not_discharge() -> None:
    b = Battery.from_config(BatteryConfig(capacity_kwh=10, reserve_pct=30, initial_soc_pct=30))
    assert b.step(2.0, -5.0, 0.25).discharge_kw == 0.0
    assert b.step(2.0, 2.0, 0.25).charge_kw == 2.0


def test_round_trip_loses_the_configured_share() -> None:
    b = Battery.from_config(BatteryConfig(capacity_kwh=10, round_trip_efficiency=0.81, reserve_pct=0))
    charged = b.step(0.0, 4.0, 1.0)  # 4 kWh AC in
    assert charged.energy_kwh == pytest.approx(4.0 * 0.9)
    out = b.step(charged.energy_kwh, -10.0, 1.0)  # empty it
    assert out.discharge_kw * 1.0 == pytest.approx(4.0 * 0.81)


def test_headroom_matches_step() -> None:
    b = Battery.from_config(BatteryConfig())
    e = 9.5
    assert b.step(e, 100.0, 0.25).charge_kw == pytest.approx(b.max_charge_kw_now(e, 0.25))
    assert b.step(e, -100.0, 0.25).discharge_kw == pytest.approx(b.max_discharge_kw_now(e, 0.25))
    assert b.soc_pct(5.0) == pytest.approx(50.0)
    assert b.efficiency_one_way == pytest.approx(math.sqrt(0.9))


loads = st.floats(0.0, 20.0)


@given(load=loads, pv=loads, power=st.floats(-10, 10), limit=st.floats(1.0, 25.0), curtail=st.booleans())
def test_site_balance(load: float, pv: float, power: float, limit: float, curtail: bool) -> None:
    charge, discharge = max(power, 0.0), max(-power, 0.0)
    f = site_flows(load, pv, charge, discharge, limit, curtail)
    assert f.import_kw - f.export_kw == pytest.approx(load - f.pv_used_kw + charge - discharge, abs=1e-9)
    assert 0 <= f.pv_used_kw <= pv + 1e-12
    assert f.curtailed_kw == pytest.approx(pv - f.pv_used_kw, abs=1e-12)
    assert f.import_kw * f.export_kw == 0  # never both
    # PV is exported only up to the limit, and not at all when curtailing.
    pv_export = f.export_kw - min(f.export_kw, discharge)
    assert pv_export <= limit + 1e-9
    if curtail:
        assert pv_export <= 1e-9
    # Sun first: PV is curtailed only when it could not all be used.
    if not curtail and f.curtailed_kw > 1e-9:
        assert f.export_kw >= limit - 1e-9 or discharge > 0


def test_sun_first_serves_house_before_export() -> None:
    f = site_flows(load_kw=1.0, pv_kw=4.0, charge_kw=2.0, discharge_kw=0.0, grid_limit_kw=17.0)
    assert (f.import_kw, f.export_kw, f.pv_used_kw) == (0.0, 1.0, 4.0)
