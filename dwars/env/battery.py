"""Home battery physics: one step of the energy content under an AC power request, and the site balance.

This is the only battery model in dwars: the simulator, the optimisers' constraints, the shield's
reachability checks and the simulated inverter all use it, so efficiency is applied in exactly one place.

Conventions
-----------
- Powers are AC-side means over the step, in kW. ``power_kw > 0`` charges, ``< 0`` discharges.
- One-way efficiency ``eta = sqrt(round_trip_efficiency)``:
  ``e_next = e + eta * charge_kw * dt_h - discharge_kw * dt_h / eta``.
- Energy stays within ``[floor_kwh, capacity_kwh]``; the floor is the reserve in normal operation.
- Everything is vectorised: scalars and numpy arrays (a batch of homes) broadcast together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dwars.config import BatteryConfig

ArrayLike = float | np.ndarray


@dataclass(frozen=True)
class BatteryStep:
    """Result of one step.

    Attributes
    ----------
    energy_kwh : energy content at the end of the step.
    charge_kw : AC power taken from the house bus (>= 0).
    discharge_kw : AC power delivered to the house bus (>= 0); never both non-zero.
    loss_kwh : conversion losses during the step (>= 0).
    """

    energy_kwh: ArrayLike
    charge_kw: ArrayLike
    discharge_kw: ArrayLike
    loss_kwh: ArrayLike

    @property
    def power_kw(self) -> ArrayLike:
        """Net AC power, charge positive."""
        return self.charge_kw - self.discharge_kw


def charge_headroom_kw(
    energy_kwh: ArrayLike, dt_h: float, capacity_kwh: ArrayLike, max_charge_kw: ArrayLike, efficiency_one_way: ArrayLike
) -> ArrayLike:
    """Largest AC charge power (kW) that this step can absorb without passing capacity or the power limit."""
    room = np.maximum(capacity_kwh - energy_kwh, 0.0) / (efficiency_one_way * dt_h)
    return np.minimum(max_charge_kw, room)


def discharge_headroom_kw(
    energy_kwh: ArrayLike, dt_h: float, floor_kwh: ArrayLike, max_discharge_kw: ArrayLike, efficiency_one_way: ArrayLike
) -> ArrayLike:
    """Largest AC discharge power (kW) this step can deliver without going below the floor."""
    room = np.maximum(energy_kwh - floor_kwh, 0.0) * efficiency_one_way / dt_h
    return np.minimum(max_discharge_kw, room)


def battery_step(
    energy_kwh: ArrayLike,
    power_kw: ArrayLike,
    dt_h: float,
    *,
    capacity_kwh: ArrayLike,
    floor_kwh: ArrayLike,
    max_charge_kw: ArrayLike,
    max_discharge_kw: ArrayLike,
    efficiency_one_way: ArrayLike,
) -> BatteryStep:
    """Apply an AC power request for ``dt_h`` hours, clipped to power limits and energy bounds.

    Parameters
    ----------
    energy_kwh : energy content at the start of the step, kWh.
    power_kw : requested AC power, kW; positive charges, negative discharges.
    dt_h : step length in hours (0.25 for 15 minutes).
    capacity_kwh : usable capacity, kWh.
    floor_kwh : lowest energy allowed, kWh (the reserve; 0 for backup use).
    max_charge_kw, max_discharge_kw : AC power limits, kW.
    efficiency_one_way : efficiency of each direction (sqrt of round trip).

    Returns
    -------
    BatteryStep
        Energy after the step and the AC powers actually delivered. When the battery starts below the
        floor (e.g. the reserve was raised), it may charge but not discharge.
    """
    requested = np.asarray(power_kw, dtype=float)
    charge = np.minimum(
        np.maximum(requested, 0.0),
        charge_headroom_kw(energy_kwh, dt_h, capacity_kwh, max_charge_kw, efficiency_one_way),
    )
    discharge = np.minimum(
        np.maximum(-requested, 0.0),
        discharge_headroom_kw(energy_kwh, dt_h, floor_kwh, max_discharge_kw, efficiency_one_way),
    )
    stored = efficiency_one_way * charge * dt_h
    drawn = discharge * dt_h / efficiency_one_way
    energy = energy_kwh + stored - drawn
    # The headroom divisions can overshoot a bound by one ulp; never let rounding leave the box.
    energy = np.minimum(energy, np.maximum(capacity_kwh, energy_kwh))
    energy = np.maximum(energy, np.minimum(floor_kwh, energy_kwh))
    loss = charge * dt_h - stored + drawn - discharge * dt_h
    if np.ndim(energy) == 0:
        return BatteryStep(float(energy), float(charge), float(discharge), float(loss))
    return BatteryStep(energy, charge, discharge, loss)


@dataclass(frozen=True)
class Battery:
    """A battery installation (the things that do not change); methods take the state that does.

    Build it from the config with :meth:`from_config`.
    """

    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    efficiency_one_way: float
    reserve_kwh: float
    wear_eur_per_kwh: float = 0.0

    @classmethod
    def from_config(cls, cfg: BatteryConfig) -> Battery:
        return cls(
            capacity_kwh=cfg.capacity_kwh,
            max_charge_kw=cfg.max_charge_kw,
            max_discharge_kw=cfg.max_discharge_kw,
            efficiency_one_way=cfg.efficiency_one_way,
            reserve_kwh=cfg.reserve_kwh,
            wear_eur_per_kwh=cfg.wear_eur_per_kwh,
        )

    def step(
        self, energy_kwh: ArrayLike, power_kw: ArrayLike, dt_h: float, floor_kwh: ArrayLike | None = None
    ) -> BatteryStep:
        """One step (see :func:`battery_step`); the floor defaults to the reserve."""
        return battery_step(
            energy_kwh,
            power_kw,
            dt_h,
            capacity_kwh=self.capacity_kwh,
            floor_kwh=self.reserve_kwh if floor_kwh is None else floor_kwh,
            max_charge_kw=self.max_charge_kw,
            max_discharge_kw=self.max_discharge_kw,
            efficiency_one_way=self.efficiency_one_way,
        )

    def max_charge_kw_now(self, energy_kwh: ArrayLike, dt_h: float) -> ArrayLike:
        """AC charge power (kW) available this step."""
        return charge_headroom_kw(energy_kwh, dt_h, self.capacity_kwh, self.max_charge_kw, self.efficiency_one_way)

    def max_discharge_kw_now(self, energy_kwh: ArrayLike, dt_h: float, floor_kwh: ArrayLike | None = None) -> ArrayLike:
        """AC discharge power (kW) available this step above the floor (default: the reserve)."""
        floor = self.reserve_kwh if floor_kwh is None else floor_kwh
        return discharge_headroom_kw(energy_kwh, dt_h, floor, self.max_discharge_kw, self.efficiency_one_way)

    def soc_pct(self, energy_kwh: ArrayLike) -> ArrayLike:
        return 100.0 * np.asarray(energy_kwh) / self.capacity_kwh


@dataclass(frozen=True)
class SiteFlows:
    """Power flows at the grid connection for one step (all kW, >= 0)."""

    import_kw: ArrayLike
    export_kw: ArrayLike
    pv_used_kw: ArrayLike
    curtailed_kw: ArrayLike


def site_flows(
    load_kw: ArrayLike,
    pv_kw: ArrayLike,
    charge_kw: ArrayLike,
    discharge_kw: ArrayLike,
    grid_limit_kw: ArrayLike,
    curtail: ArrayLike = False,
) -> SiteFlows:
    """Balance the house bus: ``import - export = load - pv_used + charge - discharge``.

    Sun first: PV serves the house and the battery before anything is exported. PV is curtailed only
    where export would pass the grid limit, or wherever ``curtail`` is true (e.g. at negative export
    prices: then PV covers house and battery and nothing is exported from PV).

    The caller keeps import within the grid limit by choosing charge power; an import above the limit is
    returned as is so that a violation is visible, never hidden.
    """
    demand = load_kw + charge_kw
    net = demand - pv_kw - discharge_kw  # > 0: import needed; < 0: surplus
    import_kw = np.maximum(net, 0.0)
    surplus = np.maximum(-net, 0.0)
    # PV is what gets curtailed (the battery's discharge is the caller's choice, so it is exported as asked).
    pv_exportable = np.minimum(surplus, pv_kw)
    battery_export = surplus - pv_exportable
    pv_export_cap = np.where(curtail, 0.0, np.maximum(grid_limit_kw - battery_export, 0.0))
    pv_export = np.minimum(pv_exportable, pv_export_cap)
    curtailed = pv_exportable - pv_export
    export_kw = battery_export + pv_export
    pv_used = pv_kw - curtailed
    return SiteFlows(import_kw, export_kw, pv_used, curtailed)
