"""The grid connection's limits: every phase under its fuse (load balancing) and the import under the peak limit.

The simulator and the Pi runtime ask the same functions; only where the per-phase loads come from differs:

- in the simulator the house (load - PV) is spread evenly over the connection's phases;
- in the runtime they come from the P1 meter's per-phase powers, less what the EV charger and the battery draw
  now (:func:`base_phase_kw`).

Who gives way (the house never does; it is not ours to switch): first the EV charger, down to its minimum power
and then off, then the battery's charging. Peak shaving (:func:`peak_decision`) then lets the battery charge less
or discharge to keep the import at or below ``import_peak_kw``; the battery's floor (the reserve) still holds, and
a goal the battery was charging for may then be reached later or not at all (the reason says so).

The battery inverter and the PV inverter are taken to be spread over all phases of the connection (a three-phase
hybrid inverter on a three-phase connection); a one-phase EV charger sits on L1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dwars.config import SiteConfig
from dwars.env.modes import Decision, Mode

TOL_KW = 1e-9


@dataclass(frozen=True)
class Connection:
    """A home's grid connection.

    Attributes
    ----------
    phases : 1 or 3.
    phase_limit_kw : what one phase may carry (fuse x voltage), kW.
    grid_limit_kw : the total the connection may carry, kW.
    import_peak_kw : the peak-shaving limit on the import, kW (``inf``: off).
    """

    phases: int = 3
    phase_limit_kw: float = 5.75
    grid_limit_kw: float = 17.0
    import_peak_kw: float = float("inf")

    @classmethod
    def from_site(cls, site: SiteConfig) -> Connection:
        peak = float("inf") if site.import_peak_kw is None else site.import_peak_kw
        return cls(site.phases, site.phase_limit_kw, site.grid_limit_kw, peak)

    @property
    def connection_limit_kw(self) -> float:
        """What the connection may carry in all: its limit, and no more than every phase at its fuse."""
        return min(self.grid_limit_kw, self.phases * self.phase_limit_kw)

    @property
    def import_limit_kw(self) -> float:
        """The import nothing flexible may push the connection past: the peak limit or the connection limit."""
        return min(self.connection_limit_kw, self.import_peak_kw)

    def spread(self, kw: float) -> np.ndarray:
        """A load spread evenly over the phases, kW per phase."""
        return np.full(self.phases, float(kw) / self.phases)

    def on_phases(self, kw: float, phases: int) -> np.ndarray:
        """A load on ``phases`` phases (L1 for one), kW per phase of the connection."""
        out = np.zeros(self.phases)
        n = min(phases, self.phases)
        out[:n] = float(kw) / n
        return out


def base_phase_kw(phase_net_kw: np.ndarray, conn: Connection, ev_kw: float, ev_phases: int,
                  battery_kw: float) -> np.ndarray:
    """What the house and the PV do per phase without the EV and the battery, from measured per-phase net powers
    (import positive) and what the EV (kW drawn) and the battery (kW, charge positive) do now."""
    return np.asarray(phase_net_kw, dtype=float) - conn.on_phases(ev_kw, ev_phases) - conn.spread(battery_kw)


def ev_cap_kw(conn: Connection, base_kw: np.ndarray, ev_phases: int) -> tuple[float, str]:
    """The most the EV charger may draw with the house as it is (``base_kw`` per phase), kW (>= 0), and the limit
    that sets it: every phase it uses under its fuse, the total under the connection limit and the peak limit."""
    n = min(ev_phases, conn.phases)
    base_kw = np.asarray(base_kw, dtype=float)
    fuse = float(np.min(conn.phase_limit_kw - base_kw[:n])) * n
    total = conn.import_limit_kw - float(np.sum(base_kw))
    if fuse <= total:
        return max(fuse, 0.0), "the main fuse"
    peak = conn.import_peak_kw < conn.connection_limit_kw
    return max(total, 0.0), f"the peak limit of {conn.import_peak_kw:g} kW" if peak else "the connection limit"


def battery_charge_cap_kw(conn: Connection, base_kw: np.ndarray, ev_kw: float, ev_phases: int) -> float:
    """The most the battery may draw from the grid side on top of the house and the EV, kW: every phase under its
    fuse and the total under the connection limit (the peak limit is :func:`peak_decision`'s). Charging from PV
    surplus is not limited by it (the caller adds the surplus). >= 0."""
    loads = np.asarray(base_kw, dtype=float) + conn.on_phases(ev_kw, ev_phases)
    per_phase = float(np.min(conn.phase_limit_kw - loads)) * conn.phases
    total = conn.connection_limit_kw - float(np.sum(loads))
    return max(min(per_phase, total), 0.0)


def ev_power_allowed(conn: Connection, base_kw: np.ndarray, wanted_kw: float, min_kw: float,
                     ev_phases: int) -> tuple[float, str]:
    """The EV power that fits (``wanted_kw`` shed to the cap, off below the charger's minimum) and why it was shed
    ("" when it fits)."""
    cap, limit = ev_cap_kw(conn, base_kw, ev_phases)
    if wanted_kw <= cap + TOL_KW:
        return float(wanted_kw), ""
    allowed = cap if cap >= min_kw - TOL_KW else 0.0
    return float(allowed), f"limited from {wanted_kw:.1f} to {allowed:.1f} kW to stay under {limit}"


def peak_decision(decision: Decision, house_net_kw: float, ev_kw: float, conn: Connection,
                  max_discharge_kw: float) -> tuple[Decision, str]:
    """The battery decision that keeps the import at or below the peak limit, and why it changed ("" if not).

    ``house_net_kw`` is the house's load less PV (import positive) and ``ev_kw`` what the EV draws after load
    balancing. Charging is cut to the room under the limit; Hold becomes self-consumption (which covers the house)
    when the house alone passes the limit; an export is raised to what the limit needs. Self-consumption already
    covers the house as far as the battery can. The battery's floor still applies when the interval is played.
    """
    peak = conn.import_peak_kw
    base = house_net_kw + ev_kw
    if not np.isfinite(peak) or decision.mode == Mode.MSC or base + decision.signed_power_kw <= peak + TOL_KW:
        return decision, ""
    limit = f"peak limit of {peak:g} kW"
    if decision.mode == Mode.IMPORT:
        room = peak - base
        if room >= 0.05:
            return (Decision(Mode.IMPORT, room, f"{decision.reason} (charging {room:.2f} instead of "
                                                 f"{decision.power_kw:.2f} kW: {limit})", decision.curtail_pv),
                    f"charging cut to {room:.2f} kW by the {limit}")
        return (Decision(Mode.MSC, 0.0, f"self-consumption instead of charging: the house alone is at the {limit}",
                         decision.curtail_pv), f"no charging: the {limit}")
    if decision.mode == Mode.HOLD:
        return (Decision(Mode.MSC, 0.0, f"self-consumption instead of hold: the house needs {base:.2f} kW, over the "
                                        f"{limit}", decision.curtail_pv), f"hold released by the {limit}")
    if decision.mode == Mode.EXPORT:
        need = min(base - peak, max_discharge_kw)
        return (Decision(Mode.EXPORT, need, f"{decision.reason} (discharging {need:.2f} kW: {limit})",
                         decision.curtail_pv), f"discharge raised to {need:.2f} kW by the {limit}")
    return decision, ""
