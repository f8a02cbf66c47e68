"""Hot-water boiler: tank physics, hot-water use, its own thermostat, and the P1-driven solar-surplus diverter.

The tank is one fully mixed volume of water. Its state is the heat it holds above the cold water that flows
in, ``E`` in kWh (``E = 0``: the tank is at ``cold_water_c`` and gives no hot water at all):

- ``kwh_per_c = litres * 4.186 kJ/(kg K) / 3600`` (1 kg per litre), ``temperature = cold_water_c + E / kwh_per_c``.
- Per interval of ``dt_h`` hours, with mean powers in kW:
  ``E_end = E_start + dt_h * (electric_kw * cop - draw_kw - loss_kw) + unmet_kwh``;
  ``unmet_kwh`` (hot water asked for when the tank has no heat left: a cold shower) is 0 at sane settings.
- Standing loss scales with the temperature above the room the tank stands in:
  ``loss = loss_kw * (T - AMBIENT_C) / (setpoint_c - AMBIENT_C)``, so ``boiler.loss_kw`` is the loss at the
  setpoint (what a label or a datasheet gives) and a tank boosted to 70 degC loses more than one at 55 degC:
  that extra loss is the honest price of storing the sun as heat.
- The boiler's own thermostat (always there, whatever dwars does) switches the element on when the tank falls
  below ``setpoint_c - DEADBAND_C`` and off at ``setpoint_c``. dwars's boost (a relay or a Home Assistant service
  switched by :class:`SurplusDiverter`) heats it on to ``boost_c`` and holds it there while it stays on.

Within an interval draw and loss are taken as constant, so the tank's energy moves along straight lines and
the moment the thermostat or the boost reaches its target is solved exactly (a partial interval of heating).
A tank that falls below the thermostat's switch-on level AFTER it reached its target in the same interval is
heated from the next interval on (at most one interval late).

Hot-water use follows a standard daily tapping pattern (:data:`TAPPINGS`) on the home's local clock, scaled
to ``boiler.daily_use_kwh``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from dwars.config import BOILER_PRIORITIES, BoilerConfig
from dwars.env.battery import ArrayLike
from dwars.errors import DataError
from dwars.timegrid import LOCAL_TZ, to_utc

WATER_KJ_PER_KG_C = 4.186  # specific heat of water; 1 litre = 1 kg
DEADBAND_C = 5.0  # a boiler thermostat switches on a few degrees below its setpoint (typically 4-8 degC), so
#                   it does not cycle the element on every small tapping
AMBIENT_C = 20.0  # room around the tank; the reference of the standing loss (EN 12897 tests at 20 degC ambient)
FULL_MARGIN_C = 1.0  # the tank counts as full within this of boost_c: the boiler's own thermostat stops there
#                      give or take a degree, and waiting for the last tenth would keep a 2 kW load on for nothing
SURPLUS_SAFETY = 0.8  # "auto" priority counts on only 80 % of the forecast surplus left today
GAP_LIMIT = timedelta(minutes=3)  # a longer silence between P1 readings resets the diverter's timers
_EPS_KWH = 1e-9

# Hot-water tapping pattern "M" of the EU water-heater regulations (Regulation (EU) No 812/2013 Annex VII
# Table 3 and No 814/2013 Annex III; the same cycle as EN 16147 / EN 13203-2): 23 tappings, 5.845 kWh of useful
# heat per day, with a shower at 07:05 and at 21:30 and dishwashing at 12:45 and 20:30. Transcription checked
# against RWTH-EBC/BESMod (BESMod/Systems/Demand/DHW/RecordsCollection/ProfileM.mo). Each entry is
# (local clock minute of the day, kWh); the longest tapping (a shower, 1.4 kWh at 6 l/min) lasts under 7 minutes,
# so each is booked at its start.
TAPPINGS: tuple[tuple[int, float], ...] = (
    (7 * 60 + 0, 0.105), (7 * 60 + 5, 1.4), (7 * 60 + 30, 0.105), (8 * 60 + 1, 0.105), (8 * 60 + 15, 0.105),
    (8 * 60 + 30, 0.105), (8 * 60 + 45, 0.105), (9 * 60 + 0, 0.105), (9 * 60 + 30, 0.105), (10 * 60 + 30, 0.105),
    (11 * 60 + 30, 0.105), (11 * 60 + 45, 0.105), (12 * 60 + 45, 0.315), (14 * 60 + 30, 0.105),
    (15 * 60 + 30, 0.105), (16 * 60 + 30, 0.105), (18 * 60 + 0, 0.105), (18 * 60 + 15, 0.105),
    (18 * 60 + 30, 0.105), (19 * 60 + 0, 0.105), (20 * 60 + 30, 0.735), (21 * 60 + 15, 0.105),
    (21 * 60 + 30, 1.4),
)


# ------------------------------------------------------------------------------------------------- tank


def kwh_per_c(cfg: BoilerConfig) -> float:
    """Heat that warms the whole tank by one degree, kWh/degC."""
    return cfg.tank_litres * WATER_KJ_PER_KG_C / 3600.0


def tank_kwh(cfg: BoilerConfig, temp_c: ArrayLike) -> ArrayLike:
    """Heat held above the cold water at a (mean) tank temperature in degC, kWh."""
    if np.ndim(temp_c):
        return (np.asarray(temp_c, dtype=float) - cfg.cold_water_c) * kwh_per_c(cfg)
    return (float(temp_c) - cfg.cold_water_c) * kwh_per_c(cfg)


def tank_temp_c(cfg: BoilerConfig, energy_kwh: ArrayLike) -> ArrayLike:
    """Mean tank temperature in degC for a heat content in kWh above the cold water."""
    if np.ndim(energy_kwh):
        return cfg.cold_water_c + np.asarray(energy_kwh, dtype=float) / kwh_per_c(cfg)
    return cfg.cold_water_c + float(energy_kwh) / kwh_per_c(cfg)


def standing_loss_kw(cfg: BoilerConfig, energy_kwh: ArrayLike) -> ArrayLike:
    """Standing heat loss in kW at a heat content: ``loss_kw`` at the setpoint, proportional to ``T - AMBIENT_C``."""
    above = np.maximum(np.asarray(tank_temp_c(cfg, energy_kwh)) - AMBIENT_C, 0.0)
    # setpoint_c may be as low as 20 degC in the config; a tank kept at room temperature loses (almost) nothing.
    return cfg.loss_kw * above / max(cfg.setpoint_c - AMBIENT_C, 1.0)


def tank_full(cfg: BoilerConfig, energy_kwh: float) -> bool:
    """True when the tank is within :data:`FULL_MARGIN_C` of ``boost_c``: it cannot take more surplus."""
    return bool(tank_temp_c(cfg, energy_kwh) >= cfg.boost_c - FULL_MARGIN_C)


def boiler_headroom_kwh(cfg: BoilerConfig, energy_kwh: ArrayLike) -> ArrayLike:
    """ELECTRIC kWh the boiler can still take before it is at ``boost_c`` (heat room divided by the cop)."""
    room = np.maximum(np.asarray(tank_kwh(cfg, cfg.boost_c)) - np.asarray(energy_kwh, dtype=float), 0.0) / cfg.cop
    return float(room) if np.ndim(room) == 0 else room


# ------------------------------------------------------------------------------------------ hot water use


def hot_water_draw_kw(
    times_utc: pd.DatetimeIndex, minutes: int, daily_kwh: float, timezone: str = LOCAL_TZ
) -> np.ndarray:
    """Mean heat drawn from the tank by hot-water use in each interval, kW.

    The tappings of :data:`TAPPINGS` happen at their local clock times every local day, scaled so that every
    local day sums to ``daily_kwh``: the spring (23 h) and autumn (25 h) DST days included, as the pattern has
    no tapping between 02:00 and 03:00 local.

    Parameters
    ----------
    times_utc : UTC interval starts (tz-aware), any length; gaps allowed (tappings in a gap are not counted).
    minutes : interval length in minutes.
    daily_kwh : heat drawn per day, kWh (``boiler.daily_use_kwh``).
    timezone : the home's clock.

    Raises
    ------
    DataError
        for a naive index, a non-positive interval length or a negative or non-finite ``daily_kwh``.
    """
    if not (np.isfinite(daily_kwh) and daily_kwh >= 0):
        raise DataError(f"boiler.daily_use_kwh = {daily_kwh}: must be 0 or more kWh")
    if not minutes > 0:
        raise DataError(f"minutes = {minutes}: the interval length must be positive")
    index = to_utc(times_utc, "time")
    out = np.zeros(len(index))
    if len(index) == 0 or daily_kwh == 0:
        return out
    local = index.tz_convert(timezone)
    days = pd.date_range(local[0].tz_localize(None).normalize() - pd.Timedelta(days=1),
                         local[-1].tz_localize(None).normalize() + pd.Timedelta(days=1), freq="D")
    clock = np.array([m for m, _ in TAPPINGS], dtype="timedelta64[m]")
    share = np.array([kwh for _, kwh in TAPPINGS]) / sum(kwh for _, kwh in TAPPINGS)
    naive = (days.to_numpy()[:, None] + clock[None, :]).ravel()
    # No tapping lies in the DST hour; shift_forward/first-occurrence only guard a changed pattern.
    instants = pd.DatetimeIndex(naive).tz_localize(timezone, nonexistent="shift_forward",
                                                   ambiguous=np.ones(len(naive), bool)).tz_convert("UTC")
    kwh = np.tile(share * daily_kwh, len(days))
    starts = index.as_unit("ns").asi8
    at = instants.as_unit("ns").asi8
    order = np.argsort(starts)
    pos = np.searchsorted(starts[order], at, side="right") - 1
    inside = pos >= 0
    slot = order[np.where(inside, pos, 0)]
    inside &= at < starts[slot] + minutes * 60 * 1_000_000_000
    out += np.bincount(slot[inside], weights=kwh[inside], minlength=len(index))
    return out / (minutes / 60.0)


# ------------------------------------------------------------------------------------------- one step


@dataclass(frozen=True)
class BoilerStep:
    """Result of one interval (kW are means over the interval).

    Attributes
    ----------
    energy_kwh : heat above the cold water at the end of the interval, kWh.
    electric_kw : mean electric power the element drew (thermostat and boost together), kW.
    boost_kw : the part of ``electric_kw`` above what the thermostat alone would have drawn (the diverted power).
    thermostat_on : the boiler's own thermostat state at the end (it will heat towards the setpoint).
    unmet_kwh : hot water asked for that the tank could not give (no heat left), kWh; 0 at sane settings.
    loss_kw : standing loss over the interval, kW.
    """

    energy_kwh: ArrayLike
    electric_kw: ArrayLike
    boost_kw: ArrayLike
    thermostat_on: ArrayLike
    unmet_kwh: ArrayLike
    loss_kw: ArrayLike


def _heat_kwh(e0: np.ndarray, out_kw: np.ndarray, heat_kw: float, level: ArrayLike, start_now: np.ndarray,
              target: ArrayLike, dt_h: ArrayLike, hold: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heat put in over the interval by an element that starts when E falls to ``level`` and stops at ``target``.

    Returns the heat in kWh, the energy where heating started (the lowest point before it) and the highest
    energy reached after it. With ``hold`` the element keeps the tank at ``target`` once there (a thermostat
    without deadband: the boost); without it the tank coasts down again (the deadband thermostat).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t_fall = np.where(out_kw > 0, (e0 - level) / out_kw, np.inf)
    # An element already on keeps heating only while below its target; above it, it waits for the level.
    t_start = np.where((start_now & (e0 < target)) | (e0 < level), 0.0, np.clip(t_fall, 0.0, dt_h))
    e_start = e0 - out_kw * t_start
    rise = heat_kw - out_kw
    need = np.maximum(target - e_start, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t_reach = np.where(rise > 0, need / rise, np.inf)
    left = dt_h - t_start
    on_h = np.where(need > 0, np.minimum(t_reach, left), 0.0)
    heat = heat_kw * on_h
    peak = np.maximum(e_start, e_start + rise * on_h)
    if hold:
        # Once at the target (or starting above it) the element covers draw and loss while it can.
        held = np.where(rise >= 0, np.maximum(left - on_h, 0.0), 0.0)
        heat = heat + out_kw * held
    return heat, e_start, peak


def boiler_step(
    cfg: BoilerConfig,
    energy_kwh: ArrayLike,
    thermostat_on: ArrayLike,
    boost_on: ArrayLike,
    draw_kw: ArrayLike,
    dt_h: ArrayLike,
) -> BoilerStep:
    """One interval of the boiler: hot-water draw, standing loss, its thermostat and dwars's boost.

    Parameters
    ----------
    cfg : the boiler.
    energy_kwh : heat above the cold water at the start, kWh (see :func:`tank_kwh`).
    thermostat_on : the boiler thermostat's state at the start (from the previous step; False at first).
    boost_on : dwars switched the boost on for this interval (heat on to ``boost_c``).
    draw_kw : mean hot-water heat drawn over the interval, kW (:func:`hot_water_draw_kw`).
    dt_h : interval length in hours.

    Returns
    -------
    BoilerStep
        with ``E_end = E_start + dt_h * (electric_kw * cop - draw_kw - loss_kw) + unmet_kwh`` exactly (to
        rounding). Scalars in, floats out; arrays broadcast.
    """
    e0 = np.asarray(energy_kwh, dtype=float)
    draw = np.asarray(draw_kw, dtype=float)
    if np.any(draw < 0) or not np.all(np.isfinite(draw)):
        raise DataError(f"draw_kw = {draw_kw}: hot-water use must be a finite power of 0 kW or more")
    if np.any(np.asarray(dt_h) <= 0):
        raise DataError(f"dt_h = {dt_h}: the interval length must be positive")
    thermo0 = np.asarray(thermostat_on, dtype=bool)
    boost = np.asarray(boost_on, dtype=bool)
    loss = np.asarray(standing_loss_kw(cfg, np.maximum(e0, 0.0)))
    out = draw + loss
    heat_kw = cfg.power_kw * cfg.cop
    e_on = tank_kwh(cfg, max(cfg.setpoint_c - DEADBAND_C, cfg.cold_water_c))
    e_set = tank_kwh(cfg, cfg.setpoint_c)
    e_boost = tank_kwh(cfg, max(cfg.boost_c, cfg.setpoint_c))

    heat_t, start_t, peak_t = _heat_kwh(e0, out, heat_kw, e_on, thermo0, e_set, dt_h, hold=False)
    heat_b, start_b, peak_b = _heat_kwh(e0, out, heat_kw, e_boost, thermo0, e_boost, dt_h, hold=True)
    heat = np.where(boost, heat_b, heat_t)
    start = np.where(boost, start_b, start_t)
    peak = np.where(boost, peak_b, peak_t)

    raw = e0 + heat - out * dt_h
    unmet = np.maximum(-raw, 0.0)
    energy = raw + unmet
    electric = heat / (cfg.cop * dt_h)
    boost_kw = np.where(boost, np.maximum(electric - heat_t / (cfg.cop * dt_h), 0.0), 0.0)
    # The thermostat is on at the end when the tank is below its switch-on level, or when it was switched on
    # (before or within the interval) and the tank has not reached the setpoint since.
    triggered = thermo0 | (start <= e_on + _EPS_KWH)
    thermo = (energy < e_on) | (triggered & (peak < e_set - _EPS_KWH) & (energy < e_set))
    if np.ndim(energy) == 0:
        return BoilerStep(float(energy), float(electric), float(boost_kw), bool(thermo), float(unmet), float(loss))
    return BoilerStep(energy, electric, boost_kw, thermo, unmet, np.broadcast_to(loss, energy.shape).copy())


# ------------------------------------------------------------------------------------------- diverter


def _duration(td: timedelta) -> str:
    seconds = td.total_seconds()
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.0f} min"


def _check_instant(name: str, t: datetime) -> None:
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise DataError(f"{name} = {t!r}: needs a time with a UTC offset")


class SurplusDiverter:
    """The P1-driven switch of the boiler's boost, with hysteresis in level and in time.

    Off -> on when the meter has shown ``net_kw <= -divert_above_kw`` (an export of at least that much) without a
    break for ``divert_minutes`` and the tank is not full; on -> off when it has shown ``net_kw >=
    release_above_kw`` (an import) for ``divert_minutes``, or at once when the tank is full. Between the two
    levels the state is kept. Each switch restarts the timers, so it never toggles faster than
    ``divert_minutes`` but when the tank fills.

    The runtime calls :meth:`update` with every P1 reading (seconds apart); the simulator once per interval
    with the interval's mean. ``net_kw`` is what the meter measures, so it includes the boiler's own draw while
    it is on: the export that switched it on shrinks by its power, which is why the release level is an import.

    Only observed time counts towards ``divert_minutes``. A gap between readings longer than :data:`GAP_LIMIT`
    restarts the timers: what happened in between is unknown (a cloud, a kettle), and counting the run before it
    as held would switch a 2 kW load on a guess. So does a reading that starts before the previous one ended
    (the Pi has no real-time clock and its clock can be set back): only its part after the previous reading
    counts, and after a clock set back by more than a reading the timers start again from the new time.
    """

    def __init__(self, cfg: BoilerConfig, on: bool = False) -> None:
        if cfg.divert_minutes < 0:
            raise DataError(f"boiler.divert_minutes = {cfg.divert_minutes}: must be 0 or more")
        self.cfg = cfg
        self._on = bool(on)
        self._hold = timedelta(minutes=cfg.divert_minutes)
        self._held = timedelta(0)  # observed time of the current run of readings meeting the switch condition
        self._kwh = 0.0  # integral of net_kw over that run, kWh (for the reason line)
        self._last_t1: datetime | None = None
        self._switched_at: datetime | None = None
        self._reason = (f"boiler on: waiting for an import of {cfg.release_above_kw:g} kW" if on else
                        f"boiler off: waiting for an export of {cfg.divert_above_kw:g} kW for "
                        f"{_duration(self._hold)}")

    @property
    def on(self) -> bool:
        """Whether the boost is switched on now."""
        return self._on

    @property
    def reason(self) -> str:
        """A plain-language line about the last switch ("boiler on: 2.1 kW exported for 2 min")."""
        return self._reason

    @property
    def switched_at(self) -> datetime | None:
        """When it last switched (the end of the reading that made it switch), or None."""
        return self._switched_at

    def update(self, t0: datetime, t1: datetime, net_kw: float, tank_full: bool) -> bool:
        """Take one meter reading and return whether the boost is on from ``t1``.

        Parameters
        ----------
        t0, t1 : start and end of the reading's window (tz-aware; a P1 telegram's previous and own time).
        net_kw : mean import minus export over the window, kW, the boiler's own draw included.
        tank_full : the tank is at ``boost_c`` (see :func:`tank_full`).

        Raises
        ------
        DataError
            for times without a UTC offset, ``t1 <= t0``, or a non-finite ``net_kw``.
        """
        _check_instant("t0", t0)
        _check_instant("t1", t1)
        if t1 <= t0:
            raise DataError(f"t1 = {t1}: a meter reading must end after it starts ({t0})")
        if not np.isfinite(net_kw):
            raise DataError(f"net_kw = {net_kw}: the meter reading is not a number")
        last, self._last_t1 = self._last_t1, t1
        if last is not None and (t0 - last > GAP_LIMIT or t0 < last):
            self._held, self._kwh = timedelta(0), 0.0
            # The clock moved: only what lies after the previous reading is new (nothing when it went back).
            t0 = min(max(t0, last), t1)
        cfg = self.cfg
        if self._on and tank_full:
            self._switch(False, t1, f"boiler off: tank at {cfg.boost_c:g} °C")
            return self._on
        condition = (net_kw >= cfg.release_above_kw) if self._on else (net_kw <= -cfg.divert_above_kw)
        if not condition:
            self._held, self._kwh = timedelta(0), 0.0
            return self._on
        # Only observed time counts as held: a short silence (< GAP_LIMIT) neither breaks the run nor adds to it.
        self._held += t1 - t0
        self._kwh += net_kw * (t1 - t0).total_seconds() / 3600.0
        held = self._held
        if held < self._hold or held <= timedelta(0) or (not self._on and tank_full):
            return self._on
        mean_kw = self._kwh / (held.total_seconds() / 3600.0)
        if self._on:
            self._switch(False, t1, f"boiler off: importing {mean_kw:.1f} kW for {_duration(held)}")
        else:
            self._switch(True, t1, f"boiler on: {-mean_kw:.1f} kW exported for {_duration(held)}")
        return self._on

    def _switch(self, on: bool, at: datetime, reason: str) -> None:
        self._on = on
        self._held, self._kwh = timedelta(0), 0.0
        self._switched_at = at
        self._reason = reason


# ------------------------------------------------------------------------------------------- priority


def boiler_first(
    cfg: BoilerConfig, battery_headroom_kwh: float, boiler_headroom_kwh: float, surplus_rest_of_day_kwh: float
) -> tuple[bool, str]:
    """Whether the boiler takes the solar surplus before the battery, and why.

    A kWh in the battery replaces a kWh bought at the evening price; a kWh of heat replaces a kWh the
    thermostat would buy anyway, at whatever price it switches on. So the battery goes first unless the sun
    left today fills both: then the boiler taking its share first costs the battery nothing.

    Parameters
    ----------
    cfg : the boiler (``priority``: battery, boiler or auto).
    battery_headroom_kwh : electric kWh the battery can still take from the house today.
    boiler_headroom_kwh : electric kWh the boiler can still take (:func:`boiler_headroom_kwh`).
    surplus_rest_of_day_kwh : forecast PV surplus (PV minus house load) for the rest of the day, kWh; only
        :data:`SURPLUS_SAFETY` of it is counted on.
    """
    if cfg.priority not in BOILER_PRIORITIES:
        raise DataError(f"boiler.priority = {cfg.priority!r}: must be one of {', '.join(BOILER_PRIORITIES)}")
    if cfg.priority == "battery":
        return False, "battery first (boiler.priority = battery)"
    if cfg.priority == "boiler":
        return True, "boiler first (boiler.priority = boiler)"
    counted = SURPLUS_SAFETY * max(surplus_rest_of_day_kwh, 0.0)
    need = max(battery_headroom_kwh, 0.0) + max(boiler_headroom_kwh, 0.0)
    if counted >= need:
        return True, (f"boiler first: the sun left today ({counted:.1f} kWh counted) fills the battery "
                      f"({battery_headroom_kwh:.1f} kWh) and the boiler ({boiler_headroom_kwh:.1f} kWh)")
    return False, (f"battery first: the sun left today ({counted:.1f} kWh counted) cannot fill both the battery "
                   f"({battery_headroom_kwh:.1f} kWh) and the boiler ({boiler_headroom_kwh:.1f} kWh)")


# ------------------------------------------------------------------------------------------- baseline run


@dataclass(frozen=True)
class BoilerRun:
    """The boiler on its own over a period (arrays of length T; energy and temperature at the END of each interval).

    ``on`` is the diverter's state DURING each interval (decided from the readings before it).
    ``reasons`` holds (the moment it switched, the reason line).
    """

    times: pd.DatetimeIndex
    minutes: int
    energy0_kwh: float
    draw_kw: np.ndarray
    electric_kw: np.ndarray
    boost_kw: np.ndarray
    loss_kw: np.ndarray
    energy_kwh: np.ndarray
    temperature_c: np.ndarray
    on: np.ndarray
    thermostat_on: np.ndarray
    unmet_kwh: np.ndarray
    reasons: list[tuple[pd.Timestamp, str]]

    @property
    def electric_kwh(self) -> float:
        """Electricity the boiler used, kWh."""
        return float(self.electric_kw.sum() * self.minutes / 60.0)

    @property
    def boost_kwh(self) -> float:
        """Electricity the boost added above the thermostat's own, kWh."""
        return float(self.boost_kw.sum() * self.minutes / 60.0)


def simulate_boiler(
    cfg: BoilerConfig,
    times: pd.DatetimeIndex,
    minutes: int,
    surplus_kw: np.ndarray | None,
    timezone: str = LOCAL_TZ,
    energy0_kwh: float | None = None,
) -> BoilerRun:
    """Run the boiler alone over a period, with the diverter switched by the P1 meter or without one.

    Parameters
    ----------
    cfg : the boiler.
    times : UTC interval starts.
    minutes : interval length.
    surplus_kw : per interval, the net export the meter would show WITHOUT the boiler (PV minus house load,
        minus battery charging where there is one), kW; None: no diverter, the thermostat only. The meter reading
        the diverter gets is ``electric_kw - surplus_kw``: the boiler's whole draw, thermostat and boost, is on it.
    timezone : the home's clock (hot-water use).
    energy0_kwh : heat in the tank at the start, kWh; default the tank at ``setpoint_c``.

    The diverter is updated at the end of each interval and its state applies from the next one, as a
    runtime acting on the meter would (at 15 minutes that is up to 13 minutes later than a real P1 loop).
    """
    index = to_utc(times, "time")
    n = len(index)
    if surplus_kw is not None:
        surplus_kw = np.asarray(surplus_kw, dtype=float)
        if surplus_kw.shape != (n,):
            raise DataError(f"surplus_kw: {surplus_kw.shape[0] if surplus_kw.ndim else 1} values for {n} intervals")
        if not np.all(np.isfinite(surplus_kw)):
            raise DataError(f"surplus_kw: blank or not a number at {index[~np.isfinite(surplus_kw)][0]}")
    dt_h = minutes / 60.0
    draw = hot_water_draw_kw(index, minutes, cfg.daily_use_kwh, timezone)
    energy = float(tank_kwh(cfg, cfg.setpoint_c)) if energy0_kwh is None else float(energy0_kwh)
    e0 = energy
    thermo = False
    diverter = SurplusDiverter(cfg) if surplus_kw is not None else None
    cols = {k: np.zeros(n) for k in ("electric", "boost", "loss", "energy", "unmet")}
    on = np.zeros(n, bool)
    thermo_arr = np.zeros(n, bool)
    reasons: list[tuple[pd.Timestamp, str]] = []
    step_len = pd.Timedelta(minutes=minutes)
    for k in range(n):
        boost = diverter is not None and diverter.on
        step = boiler_step(cfg, energy, thermo, boost, draw[k], dt_h)
        energy, thermo = float(step.energy_kwh), bool(step.thermostat_on)
        on[k], thermo_arr[k] = boost, thermo
        for key, value in (("electric", step.electric_kw), ("boost", step.boost_kw), ("loss", step.loss_kw),
                           ("energy", energy), ("unmet", step.unmet_kwh)):
            cols[key][k] = value
        if diverter is not None and surplus_kw is not None:
            t0 = index[k]
            was = diverter.on
            diverter.update(t0, t0 + step_len, float(step.electric_kw - surplus_kw[k]), tank_full(cfg, energy))
            if diverter.on != was:
                reasons.append((t0 + step_len, diverter.reason))
    return BoilerRun(
        times=index, minutes=minutes, energy0_kwh=e0, draw_kw=draw, electric_kw=cols["electric"],
        boost_kw=cols["boost"], loss_kw=cols["loss"], energy_kwh=cols["energy"],
        temperature_c=np.asarray(tank_temp_c(cfg, cols["energy"])), on=on, thermostat_on=thermo_arr,
        unmet_kwh=cols["unmet"], reasons=reasons,
    )
