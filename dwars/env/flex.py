"""The flexible loads of a home in the simulator: the EV, the boiler on solar surplus, the connection's limits.

:class:`HomeFlex` carries their state from interval to interval (the car's battery, the tank's heat, the surplus
switch) and plays one interval through :func:`dwars.env.dispatch.simulate_interval`, so ``dwars evaluate``, the
lock-step dry run and the tests see one model:

1. the EV plans with :func:`dwars.env.ev.plan_ev` from the forecasts the battery's controller sees, and load
   balancing (:mod:`dwars.env.connection`) cuts it to what the fuses and the peak limit leave;
2. the boiler's own thermostat is ordinary house load (the battery may cover it); its surplus boost is switched by
   :class:`dwars.env.boiler.SurplusDiverter` on what the P1 meter would show, exactly as on the Pi;
3. the battery then does what its decision says, never discharging into the EV or the boost.

A home without an ``[ev]`` or ``[boiler]`` section and without a peak limit is played exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dwars.env.connection import Connection, ev_power_allowed, peak_decision
from dwars.env.dispatch import IntervalResult, simulate_interval
from dwars.env.ev import EvCalendar, plan_ev_on, target_kwh
from dwars.env.modes import Decision


@dataclass
class FlexTrace:
    """What the flexible loads did, per interval (kW are interval means)."""

    ev_kw: np.ndarray
    car_kwh: np.ndarray  # in the car's battery at the END of the interval
    ev_short_kwh: list[float] = field(default_factory=list)  # below the target at each departure
    boiler_kw: np.ndarray | None = None  # thermostat + boost
    boost_kw: np.ndarray | None = None
    tank_c: np.ndarray | None = None
    unmet_heat_kwh: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def summary(self, dt_h: float) -> dict[str, Any]:
        out: dict[str, Any] = {"ev_charged_kwh": float(self.ev_kw.sum() * dt_h),
                               "ev_departures": len(self.ev_short_kwh),
                               "ev_short_kwh": float(np.sum(self.ev_short_kwh)),
                               "ev_missed_departures": int(np.sum(np.asarray(self.ev_short_kwh) > 0.05))}
        if self.boiler_kw is not None and self.boost_kw is not None:
            out.update(boiler_kwh=float(self.boiler_kw.sum() * dt_h),
                       boiler_boost_kwh=float(self.boost_kw.sum() * dt_h),
                       hot_water_unmet_kwh=float(self.unmet_heat_kwh))
        return out


class HomeFlex:
    """The EV, the boiler and the connection's limits of one home over one series of intervals.

    Parameters
    ----------
    home : the home (its installation's ``ev``, ``boiler`` and ``site`` sections are used).
    times : UTC starts of the intervals.
    minutes : interval length.
    divert : switch the boiler on solar surplus (False: its thermostat only, as without dwars).
    ev_strategy : override the config's EV strategy (``smart`` or ``now``).
    """

    def __init__(self, home: Any, times: pd.DatetimeIndex, minutes: int, divert: bool = True,
                 ev_strategy: str | None = None) -> None:
        import dataclasses

        inst = home.installation
        self.home = home
        self.times = times
        self.minutes = minutes
        self.dt_h = minutes / 60.0
        self.connection = Connection.from_site(inst.site)
        self.ev = inst.ev if ev_strategy is None or inst.ev is None else dataclasses.replace(inst.ev,
                                                                                            strategy=ev_strategy)
        self.boiler = inst.boiler
        self.divert = divert
        self.calendar = EvCalendar.build(self.ev, times, minutes, home.timezone) if self.ev else None
        if self.boiler is not None:
            from dwars.env.boiler import hot_water_draw_kw

            self.draw_kw = hot_water_draw_kw(times, minutes, self.boiler.daily_use_kwh, home.timezone)
        self.reset()

    @property
    def active(self) -> bool:
        """Anything beyond the plain home: an EV, a boiler or a peak limit."""
        return self.ev is not None or self.boiler is not None or np.isfinite(self.connection.import_peak_kw)

    def reset(self) -> None:
        n = len(self.times)
        self.car_kwh = target_kwh(self.ev) if self.ev else 0.0
        self.trace = FlexTrace(np.zeros(n), np.zeros(n), reasons=[""] * n)
        if self.boiler is not None:
            from dwars.env.boiler import SurplusDiverter, tank_kwh

            self.tank_kwh = float(tank_kwh(self.boiler, self.boiler.setpoint_c))
            self.thermostat_on = False
            self.diverter = SurplusDiverter(self.boiler)
            self.trace.boiler_kw, self.trace.boost_kw, self.trace.tank_c = np.zeros(n), np.zeros(n), np.zeros(n)

    def ev_plan(self, i: int, forecasts: Any) -> tuple[float, str]:
        """What the EV wants at interval ``i`` (kW, reason) from the forecasts issued then."""
        cal, ev = self.calendar, self.ev
        if cal is None or ev is None:
            return 0.0, ""
        if cal.arrives[i]:
            self.car_kwh = max(self.car_kwh - ev.daily_kwh, 0.0)
        if not cal.plugged[i]:
            return 0.0, ""
        plan = plan_ev_on(ev, self.car_kwh, self.dt_h, forecasts, int(cal.depart_index[i]) - i, self.home.timezone)
        return plan.now_kw, plan.reason

    def play(self, i: int, forecasts: Any, decision: Decision, energy_kwh: float, pv_kw: float, load_kw: float,
             import_price: float, export_price: float, floor_kwh: float | None = None) -> IntervalResult:
        """Play interval ``i``: the flexible loads, then the battery's ``decision`` (changed by the peak limit where
        it must be), on the actual PV and load."""
        home, dt = self.home, self.dt_h
        conn = self.connection
        reasons: list[str] = []
        steps = self._boiler_steps(i) if self.boiler is not None else None
        thermostat_kw = float(steps[0].electric_kw) if steps else 0.0
        ev_kw, ev_reason = self.ev_plan(i, forecasts)
        if ev_kw > 0:
            base = conn.spread(load_kw + thermostat_kw - pv_kw)
            ev_kw, shed = ev_power_allowed(conn, base, ev_kw, self.ev.charger_min_kw, self.ev.phases)
            ev_reason = f"{ev_reason}; {shed}" if shed else ev_reason
        if ev_reason:
            reasons.append(ev_reason)
        house_kw = load_kw + thermostat_kw
        decision, peak_note = peak_decision(decision, house_kw - pv_kw, ev_kw, conn, home.battery.max_discharge_kw)
        if peak_note:
            reasons.append(f"battery: {peak_note}")

        def run(boost_kw: float, boiler_first: bool) -> IntervalResult:
            return simulate_interval(energy_kwh, int(decision.mode), decision.power_kw, pv_kw, house_kw, import_price,
                                     export_price, dt, home.battery, home.grid_limit_kw, decision.curtail_pv,
                                     floor_kwh, ev_kw=ev_kw, boiler_kw=boost_kw, boiler_first=boiler_first,
                                     connection=conn, ev_phases=self.ev.phases if self.ev else 3)

        on = False
        result = run(0.0, False)  # without the boost: what the P1 meter shows while the boost is off
        if steps is not None and self.divert:
            on, first, why = self._switch(i, forecasts, energy_kwh, pv_kw, house_kw + ev_kw, result)
            if why:
                reasons.append(why)
            if on:
                result = run(float(steps[1].boost_kw), first)
        if steps is not None:
            self._commit(i, steps[1] if on else steps[0])
        if self.ev is not None and self.calendar is not None:
            self.car_kwh = min(self.car_kwh + ev_kw * dt * self.ev.efficiency, self.ev.capacity_kwh)
            self.trace.ev_kw[i] = ev_kw
            self.trace.car_kwh[i] = self.car_kwh
            if self.calendar.plugged[i] and self.calendar.depart_index[i] == i + 1:
                self.trace.ev_short_kwh.append(max(target_kwh(self.ev) - self.car_kwh, 0.0))
        self.trace.reasons[i] = "; ".join(reasons)
        return result

    def interval_loads(self, i: int) -> dict[str, Any]:
        """What the flexible loads did in interval ``i``, for the decision log (``loads``)."""
        t = self.trace
        out: dict[str, Any] = {}
        if self.ev is not None:
            out["ev"] = {"power_kw": round(float(t.ev_kw[i]), 3), "car_kwh": round(float(t.car_kwh[i]), 2)}
        if self.boiler is not None and t.boiler_kw is not None and t.boost_kw is not None and t.tank_c is not None:
            out["boiler"] = {"power_kw": round(float(t.boiler_kw[i]), 3), "boost_kw": round(float(t.boost_kw[i]), 3),
                             "tank_c": round(float(t.tank_c[i]), 1)}
        if t.reasons[i]:
            out["reason"] = t.reasons[i]
        return out

    # -- boiler ------------------------------------------------------------------------------------------------

    def _boiler_steps(self, i: int) -> tuple[Any, Any]:
        """The boiler's interval without and with the surplus boost (the thermostat runs in both)."""
        from dwars.env.boiler import boiler_step

        args = (self.boiler, self.tank_kwh, self.thermostat_on)
        draw = float(self.draw_kw[i])
        return boiler_step(*args, False, draw, self.dt_h), boiler_step(*args, True, draw, self.dt_h)

    def _switch(self, i: int, forecasts: Any, energy_kwh: float, pv_kw: float, load_kw: float,
                plain: IntervalResult) -> tuple[bool, bool, str]:
        """Whether the boost is on this interval, whether the boiler goes before the battery, and the switch's
        reason when it switched. ``plain`` is the interval played without the boost."""
        from dwars.env.boiler import boiler_first, boiler_headroom_kwh, tank_full

        cfg = self.boiler
        local = self.times[i].tz_convert(self.home.timezone)
        midnight = (local.normalize() + pd.Timedelta(days=1)).tz_convert("UTC")
        rest = np.asarray(forecasts.times < midnight)
        surplus = np.maximum(np.asarray(forecasts.pv_kw) - np.asarray(forecasts.load_kw), 0.0)
        headroom = boiler_headroom_kwh(cfg, self.tank_kwh)
        first, _ = boiler_first(cfg, self.home.battery.capacity_kwh - energy_kwh, headroom,
                                float(np.sum(surplus[rest]) * self.dt_h))
        # What the P1 meter shows with the boost off: after the battery took its share, or (boiler first) before.
        probe = load_kw - pv_kw if first else float(plain.import_kw - plain.export_kw)
        if self.diverter.on:
            probe += cfg.power_kw
        t0 = self.times[i]
        was_on = self.diverter.on
        on = self.diverter.update(t0.to_pydatetime(), (t0 + pd.Timedelta(minutes=self.minutes)).to_pydatetime(),
                                  probe, tank_full(cfg, self.tank_kwh))
        return on, first, self.diverter.reason if on != was_on else ""

    def _commit(self, i: int, step: Any) -> None:
        from dwars.env.boiler import tank_temp_c

        self.tank_kwh = float(step.energy_kwh)
        self.thermostat_on = bool(step.thermostat_on)
        self.trace.boiler_kw[i] = float(step.electric_kw)
        self.trace.boost_kw[i] = float(step.boost_kw)
        self.trace.tank_c[i] = float(tank_temp_c(self.boiler, self.tank_kwh))
        self.trace.unmet_heat_kwh += float(step.unmet_kwh)
