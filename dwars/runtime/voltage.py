"""High-voltage mode on the Pi: watch the grid voltage, have the interval decided again when the mode switches,
let the battery take the solar surplus and, when the export goes on, the boiler.

The rules are those of :mod:`dwars.env.voltage` (the simulator plays the same ones); this module feeds them:

- **the voltage**: every P1 reading's per-phase voltage (``[voltage] source = "meter"``: :meth:`VoltageWatch.on_reading`
  is a listener of the app's meter watch) or the inverter's grid voltage over Modbus, polled every
  :attr:`VoltageWatch.poll_s` seconds (``source = "inverter"``: :meth:`VoltageWatch.watch`);
- **the battery**: :meth:`VoltageWatch.adjust` turns the controller's proposal into charging from the surplus
  (:func:`dwars.env.voltage.absorb_decision`) before the shield checks it, so the reserve, the goals and the spread
  rule still hold. When the mode switches on or off the current interval is decided again at once;
- **the boiler**: in the mode, an export above ``boiler_export_kw`` that lasts :data:`BOILER_HOLD_S` on the P1 meter
  (the battery is full or at its limit) switches the boiler on through :class:`~dwars.runtime.flex.FlexRuntime`;
  it goes off when the mode ends (its own thermostat stops it when the tank is hot).

Why the mode looks through its own effect: while the battery and the boiler absorb, the measured voltage falls by
``rise_v_per_kw`` per kW they take. Releasing on the measured mean would hand the export back while the street is
still high and the mode would cycle every few minutes. The guard therefore judges the voltage as it would be
without the mode: the measured one plus ``rise_v_per_kw`` times what the mode absorbs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from dwars.config import VoltageConfig
from dwars.env.modes import Decision, Mode
from dwars.env.voltage import VoltageGuard, absorb_decision, needed_absorb_kw
from dwars.errors import DwarsError

log = logging.getLogger(__name__)

BOILER_HOLD_S = 60.0  # an export that lasts this long in the mode switches the boiler on (not a passing cloud edge)
FULL_PCT = 99.5  # a battery this full takes no more surplus (the boiler's turn)
STALE_S = 120.0  # a P1 reading older than this does not count as the export now
MORE_EVERY = timedelta(minutes=2)  # in the mode, ask the battery for more at most this often


class VoltageWatch:
    """High-voltage mode of one home on the Pi (see the module text).

    Parameters
    ----------
    cfg : the ``[voltage]`` section.
    max_charge_kw : the battery's charge limit, kW.
    driver : the inverter driver (``read_grid_voltage()``), for ``source = "inverter"``.
    flex : the :class:`~dwars.runtime.flex.FlexRuntime` whose boiler switch the mode may use (None: no boiler).
    poll_s : seconds between the inverter's voltage readings.
    now : the clock (tz-aware UTC ``datetime``; default the system's): how old a P1 reading is, when the inverter's
        voltage was read.

    Attributes
    ----------
    guard : the rolling mean and the mode (:class:`dwars.env.voltage.VoltageGuard`), on the voltage as it would be
        without the mode.
    measured : the rolling mean of the voltage as measured (what the log shows as ``voltage_v``).
    boiler_on : the mode has switched the boiler on.
    """

    def __init__(self, cfg: VoltageConfig, max_charge_kw: float, driver: Any | None = None, flex: Any | None = None,
                 poll_s: float = 5.0, now: Callable[[], datetime] | None = None) -> None:
        self.cfg = cfg
        self.now = now or (lambda: datetime.now(UTC))
        self.max_charge_kw = float(max_charge_kw)
        self.driver = driver
        self.flex: Any = None
        self.use_boiler(flex)
        self.poll_s = float(poll_s)
        self.guard = VoltageGuard(cfg)  # judges the voltage as it would be without the mode (module text)
        self.measured = VoltageGuard(cfg)  # the same mean of what the meter shows, for the log
        self.battery_absorbed_kw = 0.0
        self.boiler_on = False
        self.last_reading: Any = None
        self._export_since: datetime | None = None
        self._battery_asked = False  # the battery has had its decision in this mode: the boiler comes after it
        self._more_possible = False  # the mode's last decision left part of the surplus: it can take more
        self._asked_more_at: datetime | None = None
        self._requests: asyncio.Queue[str] | None = None
        self._failing = ""

    def use_boiler(self, flex: Any | None) -> None:
        """Switch the boiler of this :class:`~dwars.runtime.flex.FlexRuntime` when the battery cannot take it all
        (nothing without a switch, or with ``[voltage] boiler = false``)."""
        usable = flex is not None and getattr(flex, "switch", None) is not None and self.cfg.boiler
        self.flex = flex if usable else None

    @property
    def absorbed_kw(self) -> float:
        """What the mode takes off the grid export now, kW: the battery beyond the plan, and the boiler it switched."""
        boiler_kw = self.flex.inst.boiler.power_kw if self.boiler_on and self.flex is not None else 0.0
        return self.battery_absorbed_kw + boiler_kw

    # -- the voltage -------------------------------------------------------------------------------------------

    async def on_reading(self, reading: Any) -> None:
        """One P1 reading: its export (for the boiler and the surplus) and, with ``source = "meter"``, its voltage.
        A reading seen before (a streaming meter hands it out until the next telegram) is skipped."""
        if self.last_reading is not None and reading.time == self.last_reading.time:
            return
        self.last_reading = reading
        if self.cfg.source == "meter":
            volts = reading.phase_voltage_v
            if volts is None:
                self._problem("the P1 meter does not report the voltage per phase (a DSMR 4 meter?): set "
                              "[voltage] source = \"inverter\" or use a DSMR 5 meter")
            else:
                self._problem("")
                await self._feed(reading.time, volts)
        await self._boiler(reading)

    async def watch(self, requests: asyncio.Queue[str]) -> None:
        """A watcher of the :class:`~dwars.runtime.live.Runner`: keeps its request queue (to have the interval decided
        again) and, with ``source = "inverter"``, polls the inverter's grid voltage."""
        self._requests = requests
        if self.cfg.source != "inverter" or self.driver is None:
            await asyncio.Event().wait()  # the P1 readings feed the guard; wait here until the runner stops
        while True:
            try:
                volts = await self.driver.read_grid_voltage()
            except (DwarsError, OSError) as err:
                self._problem(f"the inverter's grid voltage cannot be read ({err})")
            else:
                self._problem("")
                await self._feed(self.now(), volts)
            await asyncio.sleep(self.poll_s)

    async def _feed(self, time: datetime, volts: Any) -> None:
        # Judge the voltage as it would be without what the mode absorbs (module text).
        lift = self.cfg.rise_v_per_kw * self.absorbed_kw
        was = self.guard.active
        self.measured.update(time, volts)
        self.guard.update(time, [float(v) + lift for v in volts])
        if was and self.guard.active and self._more_possible and self._requests is not None:
            # The mode took only part of the surplus and the voltage still climbs: take more now, not at the
            # next interval (the 10-minute mean would cross the trip level in between).
            high = (self.cfg.act_v + self.cfg.trip_v) / 2.0
            last = self._asked_more_at
            if self.measured.mean_v >= high and (last is None or time - last >= MORE_EVERY):
                self._asked_more_at, self._more_possible = time, False
                await self._requests.put(f"high voltage still {self.measured.mean_v:.1f} V: the battery takes more")
        if self.guard.active != was:
            if self.guard.active:
                log.warning("%s", self.guard.reason)
            else:
                log.info("high-voltage mode ends: %s", self.guard.reason)
                self.battery_absorbed_kw = 0.0
                await self._set_boiler(False, "boiler: high-voltage mode ended")
            if self._requests is not None:
                await self._requests.put(f"high-voltage mode {'on' if self.guard.active else 'off'}: "
                                         f"{self.guard.mean_v:.1f} V mean")

    def _problem(self, message: str) -> None:
        if message and message != self._failing:
            log.error("voltage protection: %s", message)
        elif not message and self._failing:
            log.info("voltage protection: the voltage can be read again")
        self._failing = message

    # -- the battery -------------------------------------------------------------------------------------------

    def surplus_kw(self, forecasts: Any, current: Decision | None) -> float:
        """The solar surplus now, kW: the forecast's, or more when a fresh P1 reading shows more (its export plus
        what the battery is told to take, for a battery that follows a setpoint)."""
        forecast = float(forecasts.pv_kw[0] - forecasts.load_kw[0]) if len(forecasts.pv_kw) else 0.0
        reading = self.last_reading
        if reading is None or current is None or current.mode == Mode.MSC:
            return max(forecast, 0.0)
        age = (self.now() - reading.time).total_seconds()
        if not 0 <= age <= STALE_S:
            return max(forecast, 0.0)
        measured = -float(reading.net_kw) + current.signed_power_kw
        return max(forecast, measured, 0.0)

    def adjust(self, proposed: Decision, forecasts: Any, current: Decision | None = None,
               soc_pct: float = math.nan) -> tuple[Decision, dict[str, Any] | None]:
        """The proposal in high-voltage mode (unchanged outside it) and the decision log's ``voltage`` entry (None
        when there is nothing to say). ``current``: the decision the battery carries out now; ``soc_pct``: its
        state of charge (a full battery absorbs nothing)."""
        g = self.guard
        if not g.active:
            self.battery_absorbed_kw, self._battery_asked = 0.0, False
            entry = None
            if math.isfinite(g.mean_v) and g.mean_v >= g.cfg.release_v:  # close to the mode: worth a line
                entry = {"voltage_v": round(g.mean_v, 1), "mode": "off", "reason": g.reason, "reden": g.reason_nl}
            return proposed, entry
        self._battery_asked, self._export_since = True, None  # the export counts from this decision on
        surplus = self.surplus_kw(forecasts, current)
        shown = self.measured.mean_v if math.isfinite(self.measured.mean_v) else g.mean_v
        # Sized on the voltage of the last minute when that is higher: the 10-minute mean lags a step in the export
        # (a new decision), and what the battery does from now on moves the mean that lies ahead.
        now_v = max(g.mean_v, g.recent_v) if math.isfinite(g.recent_v) else g.mean_v
        decision, why, why_nl = absorb_decision(proposed, surplus, self.max_charge_kw, shown,
                                                needed_absorb_kw(self.cfg, now_v))
        self._more_possible = decision.mode != Mode.MSC and surplus > 0.0
        if decision is proposed:
            self.battery_absorbed_kw = 0.0
        else:  # what the change takes off the export: the charge it adds and the export it stops
            room = not soc_pct >= FULL_PCT  # NaN (unknown) counts as room
            charge = min(surplus, self.max_charge_kw) if decision.mode == Mode.MSC and room else 0.0
            new = charge if decision.mode == Mode.MSC else decision.signed_power_kw
            self.battery_absorbed_kw = max(new - proposed.signed_power_kw, 0.0)
        entry = {"voltage_v": round(shown, 1), "without_mode_v": round(g.mean_v, 1), "phase": g.phase, "mode": "on",
                 "reason": why or f"{g.reason}; the battery already takes the surplus",
                 "reden": why_nl or g.reason_nl, "boiler": self.boiler_on}
        return decision, entry

    # -- the boiler --------------------------------------------------------------------------------------------

    async def _boiler(self, reading: Any) -> None:
        if self.flex is None:
            return
        if not self.guard.active or not self._battery_asked:
            self._export_since = None
            return
        if self.boiler_on or float(reading.export_kw) <= self.cfg.boiler_export_kw:
            self._export_since = None
            return
        if self._export_since is None:
            self._export_since = reading.time
        held = (reading.time - self._export_since).total_seconds()
        if held >= BOILER_HOLD_S:
            await self._set_boiler(True, f"boiler on: high voltage ({self.guard.mean_v:.1f} V) and still "
                                         f"{reading.export_kw:.1f} kW exported with the battery charging")

    async def _set_boiler(self, on: bool, why: str) -> None:
        if self.flex is None or on == self.boiler_on:
            return
        self.boiler_on = on
        self._export_since = None
        log.info("%s", why)
        await self.flex.hold_boiler(on, why)


__all__ = ["BOILER_HOLD_S", "STALE_S", "VoltageWatch"]
