"""When the grid does something the plan did not expect: the trigger for deciding again before the interval ends.

The controller plans a mean grid power for each interval. A kettle, an oven or a car charger that starts mid-way
makes the P1 meter show much more import than planned; if that lasts, the battery should react now rather than
at the next quarter hour. :func:`unexpected_peak` is the bare test; :class:`PeakWatch` adds the two things that
keep it from firing on every spike: the deviation must last ``hold_s`` seconds, and after firing it stays quiet
until the deviation has fallen below ``rearm_kw`` again (hysteresis).
"""

from __future__ import annotations

from datetime import datetime

from dwars.runtime.meter.reading import MeterReading


def unexpected_peak(reading: MeterReading, expected_grid_kw: float, threshold_kw: float) -> bool:
    """True when the meter shows more than ``threshold_kw`` more import than planned.

    ``expected_grid_kw`` is the planned net grid power, kW (+ import / - export), as :attr:`MeterReading.net_kw`.
    """
    return reading.net_kw - expected_grid_kw > threshold_kw


class PeakWatch:
    """Fires once per lasting deviation of the grid power from the plan.

    Parameters
    ----------
    threshold_kw : how far above the planned import (kW) counts as a peak (default 1.5).
    hold_s : for how long, seconds, measured by the meter's clock (default 30: a kettle's first seconds or a
        motor's start-up do not count).
    rearm_kw : the deviation must fall below this (kW) before the watch can fire again (default half the
        threshold).
    both_ways : also fire on an unexpected export of the same size (e.g. the battery stopped charging).
    """

    def __init__(self, threshold_kw: float = 1.5, hold_s: float = 30.0, rearm_kw: float | None = None,
                 both_ways: bool = False) -> None:
        if threshold_kw <= 0 or hold_s < 0:
            raise ValueError(f"threshold_kw = {threshold_kw}, hold_s = {hold_s}: need threshold_kw > 0, hold_s >= 0")
        self.threshold_kw = float(threshold_kw)
        self.hold_s = float(hold_s)
        self.rearm_kw = self.threshold_kw / 2.0 if rearm_kw is None else float(rearm_kw)
        if not 0 <= self.rearm_kw < self.threshold_kw:
            raise ValueError(f"rearm_kw = {rearm_kw}: must lie in 0 .. threshold_kw ({threshold_kw})")
        self.both_ways = both_ways
        self._since: datetime | None = None  # start of the current deviation above the threshold
        self._armed = True

    def deviation_kw(self, reading: MeterReading, expected_grid_kw: float) -> float:
        """Measured minus planned net grid power, kW (the magnitude when ``both_ways``)."""
        deviation = reading.net_kw - expected_grid_kw
        return abs(deviation) if self.both_ways else deviation

    def update(self, reading: MeterReading, expected_grid_kw: float) -> bool:
        """Feed one reading; True exactly when a peak has now lasted ``hold_s`` (then quiet until re-armed)."""
        deviation = self.deviation_kw(reading, expected_grid_kw)
        if deviation < self.rearm_kw:
            self._armed = True
        if deviation <= self.threshold_kw:
            self._since = None
            return False
        if self._since is None:
            self._since = reading.time
        if self._armed and (reading.time - self._since).total_seconds() >= self.hold_s:
            self._armed = False
            return True
        return False

    def reset(self) -> None:
        """Forget the current deviation (call after a new decision: the plan changed)."""
        self._since = None
        self._armed = True
