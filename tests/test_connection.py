"""Load balancing per phase and peak shaving: the shared rules of the simulator and the runtime."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwars.config import BatteryConfig, SiteConfig
from dwars.env.battery import Battery
from dwars.env.connection import (
    Connection,
    base_phase_kw,
    battery_charge_cap_kw,
    ev_cap_kw,
    ev_power_allowed,
    peak_decision,
)
from dwars.env.dispatch import simulate_interval
from dwars.env.modes import Decision, Mode

BATTERY = Battery.from_config(BatteryConfig(capacity_kwh=10, max_charge_kw=5, max_discharge_kw=5, reserve_pct=20))


def test_phase_limit_follows_fuse_and_voltage() -> None:
    conn = Connection.from_site(SiteConfig(phases=3, fuse_a=25, voltage_v=230, import_peak_kw=8.0))
    assert conn.phase_limit_kw == pytest.approx(5.75)
    assert conn.import_limit_kw == pytest.approx(8.0)
    assert Connection.from_site(SiteConfig()).import_peak_kw == float("inf")


def test_one_phase_charger_is_held_by_its_own_phase() -> None:
    conn = Connection(phases=3, phase_limit_kw=5.75, grid_limit_kw=17.0)
    base = np.array([2.0, 0.5, 0.5])
    cap, why = ev_cap_kw(conn, base, ev_phases=1)
    assert cap == pytest.approx(3.75) and why == "the main fuse"
    cap3, _ = ev_cap_kw(conn, base, ev_phases=3)
    assert cap3 == pytest.approx(3 * 3.75)  # the busiest phase sets every phase's share
    kw, reason = ev_power_allowed(conn, base, 7.4, 1.4, 1)
    assert kw == pytest.approx(3.75) and "from 7.4 to 3.8 kW" in reason and "main fuse" in reason


def test_charger_switches_off_below_its_minimum_and_names_the_peak_limit() -> None:
    conn = Connection(phases=3, phase_limit_kw=5.75, grid_limit_kw=17.0, import_peak_kw=6.0)
    kw, reason = ev_power_allowed(conn, conn.spread(3.0), 11.0, 4.1, 3)
    assert kw == 0.0 and "peak limit of 6 kW" in reason
    kw, reason = ev_power_allowed(conn, conn.spread(1.0), 4.1, 4.1, 3)
    assert kw == 4.1 and reason == ""


def test_measured_phases_less_ev_and_battery_give_the_house() -> None:
    conn = Connection(phases=3)
    measured = np.array([4.0, 1.0, 1.0])  # a one-phase EV of 3 kW on L1 and a battery charging 1.5 kW
    base = base_phase_kw(measured, conn, ev_kw=3.0, ev_phases=1, battery_kw=1.5)
    assert base == pytest.approx([0.5, 0.5, 0.5])
    assert battery_charge_cap_kw(conn, base, 3.0, 1) == pytest.approx(3 * (5.75 - 3.5))


modes = st.sampled_from([Mode.MSC, Mode.HOLD, Mode.IMPORT, Mode.EXPORT])


@settings(max_examples=300, deadline=None)
@given(modes, st.floats(0, 5), st.floats(2.0, 10.0), st.floats(0, 6), st.floats(0, 12), st.floats(0, 11),
       st.floats(2, 12))
def test_peak_shaving_keeps_the_import_under_the_limit_while_the_battery_can(
        mode: Mode, power: float, energy: float, pv: float, load: float, ev: float, peak: float) -> None:
    conn = Connection(phases=3, phase_limit_kw=25.0, grid_limit_kw=40.0, import_peak_kw=peak)
    ev, _ = ev_power_allowed(conn, conn.spread(load - pv), ev, 1.4, 3)  # the EV gives way first
    decision, note = peak_decision(Decision(mode, power if mode in (Mode.IMPORT, Mode.EXPORT) else 0.0, "plan"),
                                   load - pv, ev, conn, BATTERY.max_discharge_kw)
    r = simulate_interval(energy, int(decision.mode), decision.power_kw, pv, load, 0.3, 0.1, 0.25, BATTERY, 40.0,
                          ev_kw=ev, connection=conn)
    assert float(r.energy_kwh) >= BATTERY.reserve_kwh - 1e-9  # never below the reserve, peak or not
    at_limit = (float(r.discharge_kw) >= BATTERY.max_discharge_kw - 1e-6
                or float(r.energy_kwh) <= BATTERY.reserve_kwh + 1e-6)
    if not at_limit:
        assert float(r.import_kw) <= peak + 1e-6
    if float(r.charge_kw) > 1e-9:
        assert float(r.import_kw) <= peak + 1e-6  # charging never makes a peak
    if decision != Decision(mode, power if mode in (Mode.IMPORT, Mode.EXPORT) else 0.0, "plan"):
        assert "peak limit" in note and "peak limit" in decision.reason


@settings(max_examples=300, deadline=None)
@given(st.floats(2.0, 10.0), st.floats(0, 8), st.floats(0, 6), st.floats(0.5, 11))
def test_self_consumption_never_discharges_into_the_car(energy: float, pv: float, load: float, ev: float) -> None:
    r = simulate_interval(energy, int(Mode.MSC), 0.0, pv, load, 0.3, 0.1, 0.25, BATTERY, 17.0, ev_kw=ev)
    assert float(r.discharge_kw) <= max(load - pv, 0.0) + 1e-9
    # The car takes the PV surplus before the battery.
    assert float(r.charge_kw) <= max(pv - load - ev, 0.0) + 1e-9
    assert float(r.import_kw) - float(r.export_kw) == pytest.approx(
        load + ev - float(r.pv_used_kw) + float(r.charge_kw) - float(r.discharge_kw), abs=1e-9)


def test_boiler_after_the_battery_takes_only_what_the_battery_leaves() -> None:
    first = simulate_interval(5.0, int(Mode.MSC), 0.0, 6.0, 1.0, 0.3, 0.1, 0.25, BATTERY, 17.0, boiler_kw=2.0,
                              boiler_first=True)
    after = simulate_interval(5.0, int(Mode.MSC), 0.0, 6.0, 1.0, 0.3, 0.1, 0.25, BATTERY, 17.0, boiler_kw=2.0)
    assert float(after.charge_kw) == pytest.approx(5.0)  # the whole 5 kW surplus to the battery
    assert float(after.import_kw) == pytest.approx(2.0)  # the boost then comes from the grid
    assert float(first.charge_kw) == pytest.approx(3.0) and float(first.import_kw) == pytest.approx(0.0)
