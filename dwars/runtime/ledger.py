"""Today's electricity cost, with the battery and without it, from what was measured interval by interval.

The home owner's question is "what did the battery earn me today?". :class:`DayLedger` answers it for the local
day so far: each finished interval is costed at its own import and export prices twice, once with the grid
flows as they were and once as they would have been without a battery (PV first to the house, the rest to
or from the grid). The grid flows come from the P1 meter when there is one; without one they follow from the
measured PV and load and the battery's own energy change (a battery that gained 1 kWh in an interval took
1/eta kWh from the AC side).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class IntervalMeasurement:
    """One finished interval as measured: mean powers in kW (grid ones None when there is no meter)."""

    start: pd.Timestamp
    minutes: int
    pv_kw: float
    load_kw: float
    battery_energy_change_kwh: float
    import_price_eur_per_kwh: float
    export_price_eur_per_kwh: float
    grid_import_kw: float | None = None
    grid_export_kw: float | None = None


def battery_ac_kw(energy_change_kwh: float, dt_h: float, efficiency_one_way: float) -> float:
    """The battery's mean AC power (kW, charging positive) behind an energy change over ``dt_h`` hours."""
    if energy_change_kwh >= 0:
        return energy_change_kwh / efficiency_one_way / dt_h
    return energy_change_kwh * efficiency_one_way / dt_h


class DayLedger:
    """Cost of the local day so far (EUR), with the battery and without one; starts again at local midnight.

    Parameters
    ----------
    timezone : the home's time zone (the day that resets at midnight).
    efficiency_one_way : the battery's one-way efficiency (to turn an energy change into AC power).
    """

    def __init__(self, timezone: str, efficiency_one_way: float) -> None:
        self.timezone = timezone
        self.efficiency_one_way = float(efficiency_one_way)
        self.day: pd.Timestamp | None = None
        self.cost_eur = 0.0
        self.cost_without_battery_eur = 0.0
        self.intervals = 0

    def add(self, m: IntervalMeasurement) -> None:
        """Cost one finished interval (an interval of a new local day starts a new day)."""
        day = pd.Timestamp(m.start).tz_convert(self.timezone).normalize()
        if day != self.day:
            self.day, self.cost_eur, self.cost_without_battery_eur, self.intervals = day, 0.0, 0.0, 0
        dt_h = m.minutes / 60.0
        if m.grid_import_kw is not None and m.grid_export_kw is not None:
            grid_in, grid_out = m.grid_import_kw, m.grid_export_kw
        else:
            net = m.load_kw - m.pv_kw + battery_ac_kw(m.battery_energy_change_kwh, dt_h, self.efficiency_one_way)
            grid_in, grid_out = max(net, 0.0), max(-net, 0.0)
        without = m.load_kw - m.pv_kw
        price_in, price_out = m.import_price_eur_per_kwh, m.export_price_eur_per_kwh
        self.cost_eur += dt_h * (price_in * grid_in - price_out * grid_out)
        self.cost_without_battery_eur += dt_h * (price_in * max(without, 0.0) - price_out * max(-without, 0.0))
        self.intervals += 1
