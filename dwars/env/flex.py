"""The flexible loads of a home in the simulator: the EV, the boiler on solar surplus, the connection's limits.

:class:`HomeFlex` carries their state from interval to interval (the car's battery, the tank's heat, the surplus
switch) and plays one interval through :func:`dwars.env.dispatch.simulate_interval`, so ``dwars evaluate``, the
lock-step dry run and the tests see one model:

1. the EV plans with :func:`dwars.env.ev.plan_ev` from the forecasts the battery's controller sees, and load
   balancing (:mod:`dwars.env.connection`) cuts it to what the fuses and the peak limit leave;
2. the boiler's own thermostat is ordinary house load (the battery may cover it); its surplus boost is switched by
   :class:`dwars.env.boiler.SurplusDiverter` on what the P1 meter would show, exactly as on the Pi;
3. the battery then does what its decision says, never discharging into the EV or the boost;
4. with a ``[voltage]`` section, the grid voltage at the connection (:mod:`dwars.env.voltage`): high-voltage mode
   makes the battery take the solar surplus and then switches the boiler, and an interval whose voltage is still
   above the trip level loses its PV (the inverter is offline).

The voltage model, interval by interval:

- the street's voltage (without this home) comes from the scenario's ``grid_voltage_v`` column, or else from
  :func:`dwars.env.voltage.street_voltage_v` on the home's own PV (the neighbours see the same sun);
- the interval is first played with the decision as it is; its connection voltage
  (:func:`~dwars.env.voltage.connection_voltage_v`) is what :class:`~dwars.env.voltage.HighVoltageMode` judges.
  The interval's mean stands in for the 10-minute mean, and the mode is taken to act within the interval (on the
  Pi it acts within a minute of the mean crossing ``act_v``). The mode judges the voltage the home would cause
  WITHOUT absorbing, so it holds while the street stays high rather than releasing on its own success;
- with the mode on the decision becomes :func:`~dwars.env.voltage.absorb_decision` of the forecast surplus the
  shield sees (less what the boiler's thermostat and the car take): self-consumption, so the battery takes the
  surplus. As on the Pi the shield checks that decision (``play(check=...)``): with a small surplus its
  conservative forecast (less PV, more load) can see self-consumption discharge below a goal's need, and then it
  keeps the decision it had;
- when the interval still exports more than ``voltage.boiler_export_kw`` (the battery full or at its limit) the
  mode switches the boiler on, unless the tank is full, and keeps it on until the mode ends, as on the Pi;
- the interval's connection voltage as played above ``trip_v`` means the inverter is offline for the whole
  interval: it is played again without PV (the battery, on its own converter, keeps its decision; the surplus
  switch's boost ends, the mode's boiler stays on) and the PV is counted as lost.

A home without an ``[ev]``, ``[boiler]`` or ``[voltage]`` section and without a peak limit is played exactly as
before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dwars.env.connection import Connection, ev_power_allowed, peak_decision
from dwars.env.dispatch import IntervalResult, simulate_interval
from dwars.env.ev import EvCalendar, plan_ev_on, target_kwh
from dwars.env.modes import Decision, plain_words
from dwars.env.voltage import (
    HighVoltageMode,
    absorb_decision,
    connection_voltage_v,
    needed_absorb_kw,
    nl_number,
    street_voltage_v,
    trips,
    vtext,
    vtext_nl,
)
from dwars.errors import DataError


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
    loads: bool = True  # an EV, a boiler or a peak limit: the flexible-loads figures belong in the summary
    # Grid voltage (a home with [voltage]; None without):
    voltage_v: np.ndarray | None = None  # at the connection as played; a tripped interval: the voltage that tripped
    without_mode_v: np.ndarray | None = None  # at the connection with the decision as the controller made it
    hv_mode: np.ndarray | None = None  # high-voltage mode on (bool)
    tripped: np.ndarray | None = None  # the PV inverter offline (bool)
    pv_lost_kw: np.ndarray | None = None  # PV lost to the trip
    hv_boost: np.ndarray | None = None  # the boiler's boost switched on by high-voltage mode (bool)
    voltage_notes: dict[int, tuple[str, str]] = field(default_factory=dict)  # interval -> (English, Dutch)

    def summary(self, dt_h: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.loads:
            out.update(ev_charged_kwh=float(self.ev_kw.sum() * dt_h), ev_departures=len(self.ev_short_kwh),
                       ev_short_kwh=float(np.sum(self.ev_short_kwh)),
                       ev_missed_departures=int(np.sum(np.asarray(self.ev_short_kwh) > 0.05)))
        if self.boiler_kw is not None and self.boost_kw is not None:
            out.update(boiler_kwh=float(self.boiler_kw.sum() * dt_h),
                       boiler_boost_kwh=float(self.boost_kw.sum() * dt_h),
                       hot_water_unmet_kwh=float(self.unmet_heat_kwh))
        if self.voltage_v is not None and self.hv_mode is not None and self.tripped is not None \
                and self.pv_lost_kw is not None:
            t = self.tripped
            boost = self.boost_kw if self.boost_kw is not None and self.hv_boost is not None else None
            out.update(voltage_max_v=float(self.voltage_v.max()) if len(self.voltage_v) else 0.0,
                       hv_mode_hours=float(self.hv_mode.sum() * dt_h),
                       inverter_trips=int(np.sum(t[1:] & ~t[:-1]) + (t[0] if len(t) else 0)),
                       trip_hours=float(t.sum() * dt_h),
                       pv_lost_to_trips_kwh=float(self.pv_lost_kw.sum() * dt_h),
                       hv_boiler_kwh=float(boost[self.hv_boost].sum() * dt_h) if boost is not None else 0.0)
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
    voltage_mode : with a ``[voltage]`` section, act on high voltage (False: never; the inverter still trips, to
        see what the mode saves).
    street_v : the street's voltage per interval without this home's own power, V (a scenario's
        ``grid_voltage_v``); None: modelled from ``pv_kw``.
    pv_kw : the home's actual PV per interval, kW (the street model's sun); needed with ``[voltage]`` when
        ``street_v`` is None.
    has_battery : False for the battery-less reference (the ``none`` controller): high-voltage mode then has only
        the boiler to switch.

    Raises
    ------
    DataError
        with ``[voltage]`` when neither ``street_v`` nor ``pv_kw`` is given, or when either has the wrong length
        or a blank.
    """

    def __init__(self, home: Any, times: pd.DatetimeIndex, minutes: int, divert: bool = True,
                 ev_strategy: str | None = None, voltage_mode: bool = True, street_v: np.ndarray | None = None,
                 pv_kw: np.ndarray | None = None, has_battery: bool = True) -> None:
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
        self.voltage = inst.voltage
        self.voltage_mode = bool(voltage_mode)
        self.has_battery = bool(has_battery)
        self.street_v = self._street_v(street_v, pv_kw) if self.voltage is not None else None
        self.reset()

    @property
    def has_loads(self) -> bool:
        """An EV, a boiler or a peak limit (the flexible-loads figures belong in the summary)."""
        return self.ev is not None or self.boiler is not None or bool(np.isfinite(self.connection.import_peak_kw))

    @property
    def active(self) -> bool:
        """Anything beyond the plain home: flexible loads or grid-voltage protection."""
        return self.has_loads or self.voltage is not None

    def _street_v(self, street_v: np.ndarray | None, pv_kw: np.ndarray | None) -> np.ndarray:
        """The street's voltage per interval (V): given, or modelled on the PV with its peak as full sun."""
        n, cfg = len(self.times), self.voltage
        assert cfg is not None
        given = street_v is not None
        if not given and pv_kw is None:
            raise DataError(f"{self.home.installation.name}: [voltage] needs the street's voltage (a scenario "
                            "column grid_voltage_v) or the PV (pv_kw) to model it")
        values = np.asarray(street_v if given else pv_kw, dtype=float)
        what = "grid_voltage_v" if given else "pv_kw"
        if values.shape != (n,):
            raise DataError(f"{what}: {values.size} values for {n} intervals")
        if not np.all(np.isfinite(values)):
            raise DataError(f"{what}: blank or not a number at {self.times[~np.isfinite(values)][0]}")
        if given:
            return values
        pv = self.home.installation.pv
        # Full sun in the street: the inverter's rating (the home's PV is clipped there), else the series' peak.
        peak = float(pv.inverter_kw) if pv is not None else float(np.max(values, initial=0.0))
        return street_voltage_v(cfg, values, peak) if peak > 0 else np.full(n, cfg.street_base_v)

    def reset(self) -> None:
        n = len(self.times)
        self.car_kwh = target_kwh(self.ev) if self.ev else 0.0
        self.trace = FlexTrace(np.zeros(n), np.zeros(n), reasons=[""] * n, loads=self.has_loads)
        self.interventions: list[Any] = []  # the shield's interventions on high-voltage mode's last decision
        self.hv_decision: Decision | None = None  # the battery's decision as high-voltage mode changed it (last play)
        if self.boiler is not None:
            from dwars.env.boiler import SurplusDiverter, tank_kwh

            self.tank_kwh = float(tank_kwh(self.boiler, self.boiler.setpoint_c))
            self.thermostat_on = False
            self.diverter = SurplusDiverter(self.boiler)
            self.trace.boiler_kw, self.trace.boost_kw, self.trace.tank_c = np.zeros(n), np.zeros(n), np.zeros(n)
        if self.voltage is not None:
            self.hv = HighVoltageMode(self.voltage)
            self.hv_boiler_on = False  # the mode has switched the boiler on (until it ends)
            t = self.trace
            t.voltage_v, t.without_mode_v, t.pv_lost_kw = np.zeros(n), np.zeros(n), np.zeros(n)
            t.hv_mode, t.tripped, t.hv_boost = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)

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
             import_price: float, export_price: float, floor_kwh: float | None = None,
             check: Callable[[Decision], Any] | None = None) -> IntervalResult:
        """Play interval ``i``: the flexible loads, then the battery's ``decision`` (changed by the peak limit and by
        high-voltage mode where they must), on the actual PV and load.

        ``check`` is the shield for the decision high-voltage mode makes (``check(decision) -> result`` with
        ``applied`` and ``interventions``, :meth:`dwars.policy.shield.Shield.check` on this interval's state and
        forecasts): the Pi checks the mode's decision like any other. Afterwards :attr:`hv_decision` is the
        battery's decision as the mode changed it (None: unchanged) and :attr:`interventions` the shield's
        interventions on it."""
        home, dt = self.home, self.dt_h
        self.interventions, self.hv_decision = [], None
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

        def run(played: Decision, boost_kw: float, boiler_first: bool, pv: float = pv_kw) -> IntervalResult:
            return simulate_interval(energy_kwh, int(played.mode), played.power_kw, pv, house_kw, import_price,
                                     export_price, dt, home.battery, home.grid_limit_kw, played.curtail_pv,
                                     floor_kwh, ev_kw=ev_kw, boiler_kw=boost_kw, boiler_first=boiler_first,
                                     connection=conn, ev_phases=self.ev.phases if self.ev else 3)

        on = False
        result = run(decision, 0.0, False)  # without the boost: what the P1 meter shows while the boost is off
        hv_on = False
        if self.voltage is not None:
            as_is_v = self._voltage_at(i, result)
            self.trace.without_mode_v[i] = as_is_v
            hv_on = self._hv_update(i, as_is_v)
            if hv_on and self.has_battery:
                changed = self._absorb(i, decision, forecasts, thermostat_kw + ev_kw, as_is_v, check)
                if changed is not None:
                    decision, _ = peak_decision(changed, house_kw - pv_kw, ev_kw, conn, home.battery.max_discharge_kw)
                    self.hv_decision = decision
                    result = run(decision, 0.0, False)
        if steps is not None and self.divert:
            on, first, why = self._switch(i, forecasts, energy_kwh, pv_kw, house_kw + ev_kw, result)
            if why:
                reasons.append(why)
            if on:
                result = run(decision, float(steps[1].boost_kw), first)
        hv_boost = hv_on and steps is not None and self._hv_boiler(i, result)
        if hv_boost and not on:
            on, result = True, run(decision, float(steps[1].boost_kw), False)
        if self.voltage is not None:
            v = float(self._voltage_at(i, result))
            if trips(self.voltage, v):
                # The inverter is offline: the interval again without PV. The battery keeps its decision (its own
                # converter); the surplus switch's boost ends (the meter shows an import), the mode's boiler stays
                # on as long as the mode does, as on the Pi.
                on = hv_boost
                result = run(decision, float(steps[1].boost_kw) if on and steps else 0.0, False, pv=0.0)
                self._trip(i, v, pv_kw)
            self.trace.voltage_v[i] = v
            if hv_on and i not in self.trace.voltage_notes:  # nothing switched: say the mode is still on
                boiler_en, boiler_nl = ("; the boiler is on", "; de boiler staat aan") if hv_boost else ("", "")
                self._note(i, f"high-voltage mode: {vtext(as_is_v)} at the connection{boiler_en}",
                           f"hogespanningsmodus: {vtext_nl(as_is_v)} op de aansluiting{boiler_nl}")
            if i in self.trace.voltage_notes:
                reasons.append(self.trace.voltage_notes[i][0])
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
        if t.voltage_v is not None and t.hv_mode is not None and t.tripped is not None and (
                t.hv_mode[i] or t.tripped[i] or i in t.voltage_notes):
            en, nl = t.voltage_notes.get(i, ("", ""))
            out["voltage"] = {"voltage_v": round(float(t.voltage_v[i]), 1), "mode": "on" if t.hv_mode[i] else "off",
                              "tripped": bool(t.tripped[i]), "reason": en, "reden": nl}
            if t.hv_mode[i] and t.without_mode_v is not None and t.hv_boost is not None:
                out["voltage"].update(without_mode_v=round(float(t.without_mode_v[i]), 1), boiler=bool(t.hv_boost[i]))
        if t.reasons[i]:
            out["reason"] = t.reasons[i]
        return out

    # -- grid voltage ------------------------------------------------------------------------------------------

    def _voltage_at(self, i: int, result: IntervalResult) -> float:
        """The connection's voltage in interval ``i`` with the home's flows of ``result`` (V)."""
        assert self.voltage is not None and self.street_v is not None
        net = float(result.import_kw - result.export_kw)
        return float(connection_voltage_v(self.voltage, self.street_v[i], net))

    def _note(self, i: int, en: str, nl: str) -> None:
        """Add a voltage reason (English, Dutch) to interval ``i``."""
        old_en, old_nl = self.trace.voltage_notes.get(i, ("", ""))
        self.trace.voltage_notes[i] = ("; ".join(x for x in (old_en, en) if x),
                                       "; ".join(x for x in (old_nl, nl) if x))

    def _hv_update(self, i: int, mean_v: float) -> bool:
        """Feed the interval's voltage to high-voltage mode (never on without ``voltage_mode``); True when on."""
        cfg = self.voltage
        assert cfg is not None and self.trace.hv_mode is not None
        if not self.voltage_mode:
            return False
        was = self.hv.on
        on = self.hv.update(mean_v)
        if on and not was:
            self._note(i, f"high-voltage mode on: {vtext(mean_v)} at the connection (acts at {vtext(cfg.act_v)}, "
                          f"the inverter disconnects above {vtext(cfg.trip_v)})",
                       f"hogespanningsmodus aan: {vtext_nl(mean_v)} op de aansluiting (ingrijpen vanaf "
                       f"{vtext_nl(cfg.act_v)}, de omvormer schakelt af boven {vtext_nl(cfg.trip_v)})")
        elif was and not on:
            self._note(i, f"high-voltage mode off: {vtext(mean_v)}, below {vtext(cfg.release_v)}",
                       f"hogespanningsmodus uit: {vtext_nl(mean_v)}, onder {vtext_nl(cfg.release_v)}")
            if self.hv_boiler_on:
                self.hv_boiler_on = False
                self._note(i, "boiler off: high-voltage mode ended", "boiler uit: hogespanningsmodus voorbij")
        self.trace.hv_mode[i] = on
        return on

    def _absorb(self, i: int, decision: Decision, forecasts: Any, taken_kw: float, as_is_v: float,
                check: Callable[[Decision], Any] | None) -> Decision | None:
        """The battery's decision in high-voltage mode (None: unchanged), with its reasons noted.

        The surplus is the forecast's (as the controller and the shield see it) less what the boiler's thermostat
        and the car take (``taken_kw``); the mode's decision goes through ``check`` (the shield), as on the Pi."""
        home = self.home
        surplus = float(forecasts.pv_kw[0] - forecasts.load_kw[0]) - taken_kw
        absorbed, why, why_nl = absorb_decision(decision, surplus, home.battery.max_charge_kw, as_is_v,
                                                needed_absorb_kw(self.voltage, as_is_v))
        if not why:
            if i not in self.trace.voltage_notes:
                self._note(i, f"high-voltage mode: {vtext(as_is_v)} at the connection; the battery keeps "
                              f"{plain_words(decision.mode, decision.power_kw)}",
                           f"hogespanningsmodus: {vtext_nl(as_is_v)} op de aansluiting; de accu houdt zijn besluit")
            return None
        self._note(i, why, why_nl)
        if check is not None:
            checked = check(absorbed)
            self.interventions = list(checked.interventions)
            for note in self.interventions:
                self._note(i, f"shield: {note.reason_en}", f"schild: {note.reason_nl}")
            absorbed = checked.applied
        if (absorbed.mode, absorbed.power_kw) == (decision.mode, decision.power_kw):
            return None
        return absorbed

    def _hv_boiler(self, i: int, result: IntervalResult) -> bool:
        """Whether high-voltage mode has the boiler on in interval ``i`` (``result``: the interval with the battery
        absorbing, without the mode's boiler). As on the Pi it switches on while the interval still exports more
        than ``voltage.boiler_export_kw`` and the tank can take heat, and stays on until the mode ends (the
        boiler's own thermostat holds the tank at ``boost_c``)."""
        from dwars.env.boiler import tank_full

        cfg, boiler = self.voltage, self.boiler
        assert cfg is not None and boiler is not None and self.trace.hv_boost is not None
        if not cfg.boiler:
            return False
        export = float(result.export_kw)
        if not self.hv_boiler_on and export > cfg.boiler_export_kw and not tank_full(boiler, self.tank_kwh):
            self.hv_boiler_on = True
            self._note(i, f"boiler on: high voltage and still {export:.1f} kW exported with the battery absorbing",
                       f"boiler aan: hoge spanning en nog {nl_number(export)} kW teruglevering terwijl de accu laadt")
        self.trace.hv_boost[i] = self.hv_boiler_on
        return self.hv_boiler_on

    def _trip(self, i: int, voltage_v: float, pv_kw: float) -> None:
        """Record that the PV inverter was offline in interval ``i`` at ``voltage_v`` (V), losing ``pv_kw``."""
        cfg, t = self.voltage, self.trace
        assert cfg is not None and t.tripped is not None and t.pv_lost_kw is not None
        t.tripped[i], t.pv_lost_kw[i] = True, pv_kw
        kwh = pv_kw * self.dt_h
        self._note(i, f"PV inverter offline: {vtext(voltage_v)} at the connection is above {vtext(cfg.trip_v)} "
                      f"({kwh:.2f} kWh of solar power lost)",
                   f"omvormer afgeschakeld: {vtext_nl(voltage_v)} op de aansluiting is boven "
                   f"{vtext_nl(cfg.trip_v)} ({nl_number(kwh, 2)} kWh zonnestroom verloren)")

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
