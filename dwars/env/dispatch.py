"""One interval of the home: a mode decision becomes battery power, grid flows and money.

This is the simulator core that training, evaluation, the oracle replay and the runtime's dry-run share.
It is vectorised: every argument may be a scalar or an array over a batch of homes or intervals.

Definitions (the evaluation contract):

- ``import - export = load - pv_used + charge - discharge``; ``0 <= pv_used <= pv``
- ``energy_cost = dt_h * (import_price * import - export_price * export)`` in EUR
- ``wear = dt_h * wear_eur_per_kwh * discharge`` in EUR
- the battery stays within [reserve, capacity] (see :mod:`dwars.env.battery`)
- grid import and export stay within ``grid_limit_kw`` where the battery can make it so: charging is
  limited to what the connection can supply, discharging to what it can take, and PV beyond the export
  limit is curtailed.

Flexible loads (optional, see :mod:`dwars.env.ev`, :mod:`dwars.env.boiler`, :mod:`dwars.env.connection`): an EV
charging at ``ev_kw`` and a boiler boosting on solar surplus at ``boiler_kw`` are part of the load, but the battery
never discharges into them (self-consumption follows the house alone), and of the PV surplus the EV takes its
share before the battery; the boiler takes only what the battery leaves, unless ``boiler_first``. With a
``connection``, the battery's charging also keeps every phase under its fuse (peak shaving is a decision, made by
:func:`dwars.env.connection.peak_decision` before the interval is played).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dwars.env.battery import ArrayLike, Battery, site_flows
from dwars.env.modes import Mode

if TYPE_CHECKING:
    from dwars.env.connection import Connection


@dataclass(frozen=True)
class IntervalResult:
    """Everything that happened in one interval (kW are means over the interval, EUR for the interval)."""

    energy_kwh: ArrayLike
    charge_kw: ArrayLike
    discharge_kw: ArrayLike
    import_kw: ArrayLike
    export_kw: ArrayLike
    pv_used_kw: ArrayLike
    curtailed_kw: ArrayLike
    energy_cost_eur: ArrayLike
    wear_eur: ArrayLike

    @property
    def cost_eur(self) -> ArrayLike:
        """Energy cost plus wear."""
        return self.energy_cost_eur + self.wear_eur


def terminal_value_eur_per_kwh(times: pd.DatetimeIndex, minutes: int, import_price_eur_per_kwh: ArrayLike) -> float:
    """v in EUR/kWh, the value of energy left at the end: the mean import price of the last 24 hours.

    ``times`` are the interval starts of the period (a scenario or an episode); all of it when shorter.
    """
    end = times[-1] + pd.Timedelta(minutes=minutes)
    last = np.asarray(times >= end - pd.Timedelta(hours=24))
    return float(np.mean(np.asarray(import_price_eur_per_kwh)[last]))


def battery_request_kw(mode: ArrayLike, power_kw: ArrayLike, pv_kw: ArrayLike, load_kw: ArrayLike,
                       surplus_first_kw: ArrayLike = 0.0) -> ArrayLike:
    """AC battery power asked for by a mode, charge positive.

    MSC follows the house (``pv - load``: surplus charges, deficit discharges), HOLD asks 0, IMPORT asks
    ``+power_kw`` and EXPORT ``-power_kw``. ``surplus_first_kw`` is a flexible load (the EV) that takes the PV
    surplus before the battery and that the battery never discharges into.
    """
    mode = np.asarray(mode)
    power = np.asarray(power_kw, dtype=float)
    house = np.asarray(pv_kw) - np.asarray(load_kw)
    follow = np.maximum(house - np.asarray(surplus_first_kw), np.minimum(house, 0.0))
    return np.select([mode == Mode.MSC, mode == Mode.IMPORT, mode == Mode.EXPORT], [follow, power, -power], 0.0)


def simulate_interval(
    energy_kwh: ArrayLike,
    mode: ArrayLike,
    power_kw: ArrayLike,
    pv_kw: ArrayLike,
    load_kw: ArrayLike,
    import_price_eur_per_kwh: ArrayLike,
    export_price_eur_per_kwh: ArrayLike,
    dt_h: float,
    battery: Battery,
    grid_limit_kw: float,
    curtail_pv: ArrayLike = False,
    floor_kwh: ArrayLike | None = None,
    *,
    ev_kw: ArrayLike = 0.0,
    boiler_kw: ArrayLike = 0.0,
    boiler_first: bool = False,
    connection: Connection | None = None,
    ev_phases: int = 3,
) -> IntervalResult:
    """Simulate one interval for a mode decision.

    Parameters
    ----------
    energy_kwh : battery energy at the start of the interval.
    mode : :class:`~dwars.env.modes.Mode` code(s).
    power_kw : AC power magnitude for IMPORT/EXPORT (>= 0), ignored otherwise.
    pv_kw, load_kw : actual mean PV and household power over the interval.
    import_price_eur_per_kwh, export_price_eur_per_kwh : prices of the interval (see :mod:`dwars.env.tariff`).
    dt_h : interval length in hours.
    battery : the battery (limits, efficiency, reserve).
    grid_limit_kw : connection limit.
    curtail_pv : export no PV this interval.
    floor_kwh : lowest energy allowed (default: the reserve).
    ev_kw, boiler_kw : what the EV charger and the boiler's surplus boost draw this interval (kW, after load
        balancing); part of ``import``, never covered by the battery.
    boiler_first : the boiler takes the PV surplus before the battery (else after it).
    connection : phase fuses (scalar simulation only); the house, PV, battery and boiler are spread evenly over
        its phases, the EV sits on ``ev_phases`` of them.
    """
    pv = np.asarray(pv_kw, dtype=float)
    first = np.asarray(ev_kw, dtype=float) + (np.asarray(boiler_kw, dtype=float) if boiler_first else 0.0)
    total_load = np.asarray(load_kw, dtype=float) + np.asarray(ev_kw, dtype=float) + np.asarray(boiler_kw, dtype=float)
    request = battery_request_kw(mode, power_kw, pv, load_kw, first)
    # The connection limits what charging may draw and what discharging may push out.
    request = np.minimum(request, np.maximum(grid_limit_kw + pv - total_load, 0.0))
    request = np.maximum(request, -(grid_limit_kw + total_load))
    if connection is not None:
        from dwars.env.connection import battery_charge_cap_kw

        base = connection.spread(float(total_load - np.asarray(ev_kw) - pv))
        request = np.minimum(request, max(battery_charge_cap_kw(connection, base, float(ev_kw), ev_phases),
                                          float(pv - total_load)))
    step = battery.step(energy_kwh, request, dt_h, floor_kwh)
    flows = site_flows(total_load, pv_kw, step.charge_kw, step.discharge_kw, grid_limit_kw, curtail_pv)
    energy_cost = dt_h * (np.asarray(import_price_eur_per_kwh) * flows.import_kw
                          - np.asarray(export_price_eur_per_kwh) * flows.export_kw)
    wear = dt_h * battery.wear_eur_per_kwh * np.asarray(step.discharge_kw)
    return IntervalResult(
        energy_kwh=step.energy_kwh,
        charge_kw=step.charge_kw,
        discharge_kw=step.discharge_kw,
        import_kw=flows.import_kw,
        export_kw=flows.export_kw,
        pv_used_kw=flows.pv_used_kw,
        curtailed_kw=flows.curtailed_kw,
        energy_cost_eur=energy_cost,
        wear_eur=wear,
    )
