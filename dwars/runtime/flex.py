"""The flexible loads beside the battery loop on the Pi: the EV charger and the boiler's surplus switch.

Two paces, the same rules as the simulator (:mod:`dwars.env.flex`):

- **every interval** (:meth:`FlexRuntime.interval`), after the battery's decision: the EV is planned again with
  :func:`dwars.env.ev.plan_ev` from the forecasts the battery saw and commanded; what the loads do, with their
  reasons, goes into the interval's decision-log record (``loads``). The battery's decision itself passes
  :func:`dwars.env.connection.peak_decision` first (:meth:`FlexRuntime.adjust`).
- **every P1 reading** (:meth:`FlexRuntime.on_reading`, seconds apart): load balancing cuts the charger at once when a
  phase nears its fuse or the import the peak limit, and gives the power back when there is room again; the
  :class:`~dwars.env.boiler.SurplusDiverter` switches the boiler on a lasting export and off on a lasting import.

The car's energy is not known to a charger: at each plug-in dwars assumes the car needs its ``daily_kwh`` and
counts what the charger has delivered since (``session_kwh``). A charger or switch that does not answer is
logged, the interval goes on without it, and its own fallback applies.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.env.connection import Connection, base_phase_kw, ev_power_allowed, peak_decision
from dwars.env.ev import plan_ev_on, target_kwh
from dwars.env.modes import Decision
from dwars.errors import DwarsError

log = logging.getLogger(__name__)

REBALANCE_KW = 0.5  # give the charger more power back only when the room grew by this much (no hunting)


def next_departure(when: pd.Timestamp, depart_hour: int, timezone: str) -> pd.Timestamp:
    """The next local ``depart_hour`` o'clock after ``when``, in UTC."""
    local = when.tz_convert(timezone)
    day = local.normalize().tz_localize(None)
    for add in (0, 1, 2):
        t = (day + pd.Timedelta(days=add, hours=depart_hour)).tz_localize(timezone, nonexistent="shift_forward",
                                                                          ambiguous=False)
        if t > local:
            return t.tz_convert("UTC")
    raise AssertionError("unreachable")  # pragma: no cover


class FlexRuntime:
    """The EV charger and the boiler switch of one home (either may be None).

    Parameters
    ----------
    inst : the home's config (``[ev]``, ``[boiler]``, ``[site]``).
    charger : an EV charger driver (:mod:`dwars.runtime.charger`) or None.
    switch : the boiler's switch (:mod:`dwars.runtime.switch`) or None.
    minutes : the decision interval.
    """

    def __init__(self, inst: Installation, charger: Any | None, switch: Any | None, minutes: int) -> None:
        self.inst = inst
        self.charger = charger if inst.ev is not None else None
        self.switch = switch if inst.boiler is not None else None
        self.minutes = int(minutes)
        self.connection = Connection.from_site(inst.site)
        self.diverter: Any = None
        if self.switch is not None and inst.boiler is not None:
            from dwars.env.boiler import SurplusDiverter

            self.diverter = SurplusDiverter(inst.boiler)
        self.ev_wanted_kw = 0.0  # what the plan wants this interval
        self.ev_commanded_kw = 0.0  # what the charger was last told (load balancing may have cut it)
        self.ev_reason = ""
        self.shed_reason = ""
        self.last_charger: Any = None
        self.last_reading: Any = None
        self._last_reading_time: datetime | None = None
        self.boiler_reason = ""
        self.boiler_held = False  # high-voltage mode keeps the boiler on (dwars.runtime.voltage)
        self.boiler_switched = False  # what the switch was last told

    def close(self) -> None:
        """Let go of the charger and the switch (each falls back to its own behaviour: see their modules)."""
        for device in (self.charger, self.switch):
            if device is not None:
                device.close()

    @property
    def active(self) -> bool:
        return self.charger is not None or self.switch is not None or np.isfinite(self.connection.import_peak_kw)

    # -- every interval ----------------------------------------------------------------------------------------

    def adjust(self, decision: Decision, forecasts: Any) -> tuple[Decision, str]:
        """The battery's decision under the peak limit (see :func:`dwars.env.connection.peak_decision`)."""
        house = float(forecasts.load_kw[0] - forecasts.pv_kw[0])
        return peak_decision(decision, house, self.ev_commanded_kw, self.connection,
                             self.inst.battery.max_discharge_kw)

    async def interval(self, when: pd.Timestamp, forecasts: Any) -> dict[str, Any]:
        """Plan and command the EV for the interval starting at ``when``; what the loads do, for the log."""
        out: dict[str, Any] = {}
        if self.charger is not None:
            out["ev"] = await self._plan_ev(when, forecasts)
        if self.switch is not None:
            out["boiler"] = {"on": self.boiler_switched, "reason": self.boiler_reason or "boiler: waiting for a "
                             "solar surplus"}
        return out

    async def _plan_ev(self, when: pd.Timestamp, forecasts: Any) -> dict[str, Any]:
        ev = self.inst.ev
        assert ev is not None and self.charger is not None
        try:
            reading = await self.charger.read()
        except (DwarsError, OSError) as err:
            self.ev_reason = f"EV charger not reachable ({err}); it runs on its own fallback current"
            log.error("%s", self.ev_reason)
            return {"power_kw": None, "reason": self.ev_reason}
        self.last_charger = reading
        if not reading.plugged:
            self.ev_wanted_kw = 0.0
            self.ev_reason = "EV: not plugged in"
            await self._command(0.0)
            return {"power_kw": 0.0, "plugged": False, "reason": self.ev_reason}
        dt_h = self.minutes / 60.0
        car_kwh = target_kwh(ev) - ev.daily_kwh + reading.session_kwh * ev.efficiency
        depart = next_departure(when, ev.depart_hour, self.inst.site.timezone)
        left = max(int((depart - when) / pd.Timedelta(minutes=self.minutes)), 1)
        plan = plan_ev_on(ev, car_kwh, dt_h, forecasts, left, self.inst.site.timezone)
        self.ev_wanted_kw, self.ev_reason = plan.now_kw, plan.reason
        allowed = plan.now_kw
        if self.last_reading is not None:
            allowed, self.shed_reason = self._balanced(self.last_reading, plan.now_kw)
        commanded = await self._command(allowed)
        reason = f"{plan.reason}; {self.shed_reason}" if self.shed_reason and allowed < plan.now_kw else plan.reason
        return {"power_kw": commanded, "plugged": True, "session_kwh": round(reading.session_kwh, 3),
                "car_kwh_estimate": round(car_kwh, 2), "reason": reason}

    async def _command(self, kw: float) -> float:
        ev = self.inst.ev
        assert ev is not None and self.charger is not None
        try:
            commanded = float(await self.charger.set_power(kw, ev.phases, self.inst.site.voltage_v))
        except (DwarsError, OSError) as err:
            log.error("EV charger did not take %.1f kW (%s); it runs on its own fallback current", kw, err)
            return self.ev_commanded_kw
        self.ev_commanded_kw = commanded
        return commanded

    # -- every P1 reading --------------------------------------------------------------------------------------

    def _balanced(self, reading: Any, wanted_kw: float) -> tuple[float, str]:
        ev = self.inst.ev
        assert ev is not None
        conn = self.connection
        drawn = float(self.last_charger.charging_kw) if self.last_charger is not None else self.ev_commanded_kw
        if reading.phase_power_kw is not None and len(reading.phase_power_kw) == conn.phases:
            base = base_phase_kw(np.asarray(reading.phase_power_kw), conn, drawn, ev.phases, 0.0)
        else:  # a meter without per-phase powers: spread the net evenly
            base = conn.spread(float(reading.net_kw) - drawn)
        return ev_power_allowed(conn, base, wanted_kw, ev.charger_min_kw, ev.phases)

    async def on_reading(self, reading: Any) -> None:
        """Load balancing and the boiler's switch on one P1 reading (a reading seen before is skipped: a meter that
        streams hands the same one out until the next telegram)."""
        if reading.time == self._last_reading_time:
            return
        previous, self._last_reading_time = self._last_reading_time, reading.time
        self.last_reading = reading
        if self.charger is not None and self.inst.ev is not None and self.ev_wanted_kw > 0:
            allowed, why = self._balanced(reading, self.ev_wanted_kw)
            if allowed < self.ev_commanded_kw - 1e-6 or allowed > self.ev_commanded_kw + REBALANCE_KW:
                self.shed_reason = why
                if why:
                    log.warning("EV: %s", why)
                await self._command(allowed)
        if self.diverter is not None and previous is not None:
            was_on = self.diverter.on
            on = self.diverter.update(previous, reading.time, float(reading.net_kw), False)
            if on != was_on:
                await self._set_boiler(on or self.boiler_held, self.diverter.reason)

    async def hold_boiler(self, on: bool, why: str) -> None:
        """High-voltage mode keeps the boiler on (``on``) or lets it go back to the surplus switch."""
        self.boiler_held = bool(on)
        if self.switch is not None:
            await self._set_boiler(on or bool(self.diverter is not None and self.diverter.on), why)

    async def _set_boiler(self, on: bool, why: str) -> None:
        if on == self.boiler_switched:
            return
        self.boiler_reason = why
        log.info("%s", why)
        try:
            await self.switch.set(on)
        except (DwarsError, OSError) as err:
            log.error("boiler switch did not take %s (%s)", "on" if on else "off", err)
        else:
            self.boiler_switched = on
