"""Grid voltage: the rolling 10-minute mean, high-voltage mode with hysteresis, the battery's answer to it, and a
simple street (feeder) model for the simulator.

On a sunny day the voltage in a Dutch low-voltage street rises with the neighbours' solar export. A PV inverter
must disconnect when the 10-minute mean of its grid voltage exceeds 253 V (230 V + 10 %: EN 50160, the Dutch grid
code, NEN-EN 50549-1), and the home loses its production until the voltage is back down. Every kW the home itself
exports raises the voltage at its own connection further (the cable to the street), so absorbing the surplus at
home keeps the inverter online:

1. :class:`VoltageGuard` keeps the rolling mean per phase (``[voltage] window_minutes``) and switches
   :class:`HighVoltageMode` on at ``trip_v - margin_v`` and off below ``trip_v - margin_v - hysteresis_v``;
2. :func:`absorb_decision` raises the battery's power by what :func:`needed_absorb_kw` says the voltage needs: less
   export, then a charge from the solar surplus (never grid energy, so no spread applies), up to all of the surplus
   (self-consumption); a decision that already absorbs enough is kept, and the shield checks the result;
3. the boiler (:mod:`dwars.env.boiler`) takes what the battery cannot (full, or at its power limit): the P1 meter
   still shows an export while the mode is on.

The simulator has no recorded street voltage in general, so :func:`street_voltage_v` models one: a base voltage
without sun, plus a rise proportional to the PV in the street (taken as the home's own PV profile: the
neighbours see the same sun). :func:`connection_voltage_v` adds the home's own net power through the cable's
sensitivity (V per kW). A scenario's ``grid_voltage_v`` column (street voltage without this home's own power)
replaces the model. :func:`trips` says which intervals the inverter would be offline.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np

from dwars.config import VoltageConfig
from dwars.env.battery import ArrayLike
from dwars.env.modes import Decision, Mode
from dwars.errors import DataError

MIN_SURPLUS_KW = 0.05  # below this there is no surplus worth a charge command
RECENT = timedelta(minutes=1)  # "the voltage now": the mean of the last minute of readings
MIN_COVERAGE = 0.1  # the rolling mean counts once readings span this fraction of the window (a minute of ten)


def vtext(v: float) -> str:
    return f"{v:.1f} V"


def nl_number(value: float, digits: int = 1) -> str:
    """A number as a Dutch reader writes it: a decimal comma (``251,8``)."""
    return f"{value:.{digits}f}".replace(".", ",")


def vtext_nl(v: float) -> str:
    return f"{nl_number(v)} V"


class HighVoltageMode:
    """On at a mean of ``act_v`` or more, off below ``release_v``; between the two the state is kept."""

    def __init__(self, cfg: VoltageConfig, on: bool = False) -> None:
        if cfg.release_v >= cfg.act_v:
            raise DataError(f"voltage.hysteresis_v = {cfg.hysteresis_v}: must be more than 0")
        self.cfg = cfg
        self.on = bool(on)

    def update(self, mean_v: float) -> bool:
        """Feed one mean voltage (V); returns whether the mode is on now. NaN keeps the state."""
        if math.isfinite(mean_v):
            if not self.on and mean_v >= self.cfg.act_v:
                self.on = True
            elif self.on and mean_v < self.cfg.release_v:
                self.on = False
        return self.on


class VoltageGuard:
    """The rolling mean of each phase's voltage and high-voltage mode on it (the runtime: one P1 reading at a time).

    The highest phase counts: a single-phase inverter trips on its own phase, a three-phase one on any. Readings
    are averaged as samples (a P1 meter sends them at a steady pace). A gap longer than the window, or a clock
    set back, starts the mean again; until the readings span a tenth of the window the mean is not trusted
    (NaN) and the mode keeps its state.

    Attributes
    ----------
    mean_v : the highest phase's rolling mean, V (NaN: not enough readings yet).
    phase : that phase, 1-based (0: none yet).
    changed : the last :meth:`update` switched the mode.
    reason, reason_nl : a plain-words line about the mode now (English, Dutch).
    """

    def __init__(self, cfg: VoltageConfig) -> None:
        self.cfg = cfg
        self.mode = HighVoltageMode(cfg)
        self.window = timedelta(minutes=cfg.window_minutes)
        self._samples: deque[tuple[datetime, np.ndarray]] = deque()
        self._sum: np.ndarray | None = None
        self.mean_v = math.nan
        self.phase = 0
        self.changed = False

    @property
    def active(self) -> bool:
        """Whether high-voltage mode is on."""
        return self.mode.on

    @property
    def recent_v(self) -> float:
        """The highest phase's mean over the last :data:`RECENT` of readings, V (NaN: no readings)."""
        if not self._samples:
            return math.nan
        newest = self._samples[-1][0]
        recent = [v for _, v in itertools.takewhile(lambda s: newest - s[0] <= RECENT, reversed(self._samples))]
        means = np.mean(np.asarray(recent), axis=0)
        return float(np.max(np.where(np.isfinite(means), means, -np.inf)))

    def update(self, time: datetime, volts: Sequence[float]) -> bool:
        """Take one reading (tz-aware time, V per phase; NaN phases are skipped); returns whether the mode is on.

        Raises
        ------
        DataError
            for a naive time.
        """
        if time.tzinfo is None:
            raise DataError(f"voltage reading time = {time}: must be timezone-aware")
        v = np.asarray([float(x) for x in volts], dtype=float)
        if v.size == 0 or not np.isfinite(v).any():
            self.changed = False
            return self.active
        last = self._samples[-1][0] if self._samples else None
        if last is not None and (time < last or time - last > self.window or v.shape != self._samples[-1][1].shape):
            self._samples.clear()
            self._sum = None
        self._samples.append((time, v))
        self._sum = v.copy() if self._sum is None else self._sum + v
        while time - self._samples[0][0] > self.window:
            self._sum = self._sum - self._samples.popleft()[1]
        span = time - self._samples[0][0]
        if span >= self.window * MIN_COVERAGE:
            means = self._sum / len(self._samples)
            means = np.where(np.isfinite(means), means, -np.inf)
            k = int(np.argmax(means))
            self.mean_v, self.phase = float(means[k]), k + 1
        else:
            self.mean_v = math.nan
        was = self.active
        now = self.mode.update(self.mean_v)
        self.changed = now != was
        return now

    @property
    def reason(self) -> str:
        where = f" on L{self.phase}" if self.phase else ""
        minutes = f"{self.cfg.window_minutes:g}-min mean"
        if self.active:
            return (f"high voltage: {vtext(self.mean_v)} ({minutes}{where}), the inverter disconnects above "
                    f"{vtext(self.cfg.trip_v)}: absorbing the solar surplus at home")
        if math.isfinite(self.mean_v):
            return f"grid voltage {vtext(self.mean_v)} ({minutes}{where}): normal"
        return "grid voltage: not enough readings yet"

    @property
    def reason_nl(self) -> str:
        if self.active:
            return (f"spanning {vtext_nl(self.mean_v)} (gemiddelde over {self.cfg.window_minutes:g} min): zonne-"
                    f"overschot blijft in huis om afschakelen boven {vtext_nl(self.cfg.trip_v)} te voorkomen")
        if math.isfinite(self.mean_v):
            return f"spanning {vtext_nl(self.mean_v)}: normaal"
        return "spanning: nog te weinig metingen"


def needed_absorb_kw(cfg: VoltageConfig, without_mode_v: float) -> float:
    """How much the home's net export must fall (kW) to bring its voltage from ``without_mode_v`` (V, as it would
    be without the mode) to half the hysteresis below the activation level: ``(V - act_v + hysteresis_v / 2) /
    rise_v_per_kw``, at least 0 (infinite when the home's own power does not move its voltage: then all of it).

    Why not to the activation level itself: the Pi decides again only each interval (or when the mode switches),
    and the 10-minute mean lags, so a little room keeps a rising street from reaching the trip level meanwhile.
    Why not more: every kWh the battery takes early is room it lacks in the sunniest hours that follow.
    """
    excess = float(without_mode_v) - (cfg.act_v - cfg.hysteresis_v / 2.0)
    if not math.isfinite(excess) or excess <= 0:
        return 0.0
    return excess / cfg.rise_v_per_kw if cfg.rise_v_per_kw > 0 else math.inf


def absorb_decision(decision: Decision, surplus_kw: float, max_charge_kw: float, mean_v: float,
                    needed_kw: float = math.inf) -> tuple[Decision, str, str]:
    """The battery's decision in high-voltage mode, with a reason in English and in Dutch ("" when unchanged).

    ``surplus_kw`` is the expected solar surplus now (PV minus house, kW: what the home would export with the
    battery idle); ``needed_kw`` how much the home's export must fall (:func:`needed_absorb_kw`; default: all of
    it). The battery's power moves up by ``needed_kw`` and no further: an export shrinks (or stops), then the
    battery charges from the surplus. A charge never goes beyond the surplus, so it is own PV and the spread rule
    does not apply; the battery keeps the room it does not need now for the sunniest hours that follow.

    When all of the surplus is needed (or more) the battery goes to self-consumption: the inverter then follows the
    house second by second and takes exactly the surplus, up to its charge limit, whatever a passing cloud does.
    Without a surplus an export becomes Hold at most. Self-consumption is kept, and so is a charge at least as
    large as what is needed. The result only ever stores more than the decision it replaces, but the caller still
    passes it through the shield: the shield's cautious forecast may see self-consumption discharge.
    """
    cap = min(max(float(surplus_kw), 0.0), float(max_charge_kw))
    if decision.mode == Mode.MSC or needed_kw <= 0:
        return decision, "", ""
    before = decision.signed_power_kw
    target = before + float(needed_kw)
    if decision.mode == Mode.IMPORT and before >= min(target, cap) - 1e-9:
        return decision, "", ""
    was = f"(was: {decision.describe()})"
    all_of_it, has_surplus = target >= cap - 1e-9, cap >= MIN_SURPLUS_KW
    if all_of_it and not has_surplus and decision.mode != Mode.EXPORT:
        return decision, "", ""  # no surplus to take and no export to stop
    if all_of_it and has_surplus:  # all of the surplus (and the battery's export) is needed
        why = (f"high voltage {vtext(mean_v)}: the battery takes the solar surplus (about {cap:.1f} kW) to keep the "
               f"inverter online {was}")
        why_nl = (f"spanning {vtext_nl(mean_v)}: accu laadt ca. {nl_number(cap)} kW zonne-overschot om afschakelen te "
                  "voorkomen")
        return Decision(Mode.MSC, 0.0, why, decision.curtail_pv), why, why_nl
    if target < -MIN_SURPLUS_KW:
        why = f"high voltage {vtext(mean_v)}: exporting {-target:.1f} kW instead, to keep the inverter online {was}"
        why_nl = f"spanning {vtext_nl(mean_v)}: accu levert {nl_number(-target)} kW terug in plaats van meer"
        return Decision(Mode.EXPORT, -target, why, decision.curtail_pv), why, why_nl
    if target <= MIN_SURPLUS_KW or not has_surplus:  # the export stops; there is nothing to charge with
        why = f"high voltage {vtext(mean_v)}: holding instead of exporting {was}"
        why_nl = f"spanning {vtext_nl(mean_v)}: accu houdt vast in plaats van terugleveren"
        return Decision(Mode.HOLD, 0.0, why, decision.curtail_pv), why, why_nl
    why = f"high voltage {vtext(mean_v)}: charging {target:.1f} kW from own PV to keep the inverter online {was}"
    why_nl = f"spanning {vtext_nl(mean_v)}: accu laadt {nl_number(target)} kW om afschakelen te voorkomen"
    return Decision(Mode.IMPORT, target, why, decision.curtail_pv), why, why_nl


def street_voltage_v(cfg: VoltageConfig, pv_kw: ArrayLike, pv_peak_kw: float) -> np.ndarray:
    """The street's voltage without this home's own power, V: ``street_base_v + street_rise_v * pv / pv_peak``.

    ``pv_kw`` is the home's PV (kW), taken as the shape of the street's PV; ``pv_peak_kw`` its peak (kW).
    """
    if not pv_peak_kw > 0:
        raise DataError(f"pv_peak_kw = {pv_peak_kw}: must be more than 0")
    share = np.clip(np.asarray(pv_kw, dtype=float) / pv_peak_kw, 0.0, 1.0)
    return cfg.street_base_v + cfg.street_rise_v * np.nan_to_num(share)


def connection_voltage_v(cfg: VoltageConfig, street_v: ArrayLike, net_kw: ArrayLike) -> np.ndarray:
    """The voltage at the home's connection, V: the street's minus ``rise_v_per_kw`` times the net import (kW,
    import positive: an export raises it)."""
    return np.asarray(street_v, dtype=float) - cfg.rise_v_per_kw * np.asarray(net_kw, dtype=float)


def trips(cfg: VoltageConfig, voltage_v: ArrayLike) -> np.ndarray:
    """Whether a PV inverter would be offline (bool per value): the mean voltage above ``trip_v``."""
    return np.asarray(voltage_v, dtype=float) > cfg.trip_v
