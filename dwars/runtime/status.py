"""What the runtime knows after each decision, as one immutable snapshot for every consumer (Home Assistant, logs).

The control loop builds one :class:`RuntimeStatus` per interval; the MQTT bridge
(:mod:`dwars.runtime.homeassistant`) and anything else that shows the runtime read that same snapshot, so they
never disagree about what dwars did. :func:`next_charge_block` finds the next grid-charging block in a plan,
for the "next planned charge" shown to the home owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from dwars.env.modes import Mode


def _utc(when: datetime, field: str) -> pd.Timestamp:
    ts = pd.Timestamp(when)
    if ts.tzinfo is None:
        raise ValueError(f"{field} = {ts}: must be timezone-aware (dwars computes in UTC)")
    return ts.tz_convert("UTC")


@dataclass(frozen=True)
class RuntimeStatus:
    """The runtime after one decision.

    Attributes
    ----------
    time : start of the interval decided, tz-aware (converted to UTC).
    mode : the applied battery mode, as shown to the home owner ("MSC", "Hold", "Import", "Export").
    reason : the applied decision's reason, one line.
    power_kw : battery power setpoint on the AC side in kW, charge positive, discharge negative, 0 for MSC and
        Hold (:attr:`dwars.env.modes.Decision.signed_power_kw`).
    soc_pct : state of charge read from the inverter, in % of usable capacity.
    reserve_pct : the backup reserve in force, in %.
    endpoint_pct : the SoC target at the daily endpoint, in %.
    endpoint_hour : local clock hour of the daily endpoint (0..23), None when the endpoint is switched off.
    next_charge_start, next_charge_end : the next planned block of grid charging (UTC; end exclusive), None when
        the plan holds none (see :func:`next_charge_block`).
    cost_today_eur : electricity cost of the local day so far, in EUR incl. VAT (negative: net income).
    cost_today_without_battery_eur : the same day's cost had the home no battery (the reference), in EUR.
    shield_interventions_today : how often the safety shield changed a decision today (local day).
    safe_mode : True while dwars runs its fallback (self-consumption) because something is wrong.
    controller : name of the controller deciding ("rl", "mpc_shield", ...).
    grid_voltage_v : the rolling mean grid voltage of the highest phase, V (None: not watched or not known yet).
    high_voltage : True while high-voltage mode absorbs the solar surplus (:mod:`dwars.runtime.voltage`).
    """

    time: datetime
    mode: str
    reason: str
    power_kw: float
    soc_pct: float
    reserve_pct: float
    endpoint_pct: float
    endpoint_hour: int | None
    next_charge_start: datetime | None
    next_charge_end: datetime | None
    cost_today_eur: float
    cost_today_without_battery_eur: float
    shield_interventions_today: int
    safe_mode: bool
    controller: str
    grid_voltage_v: float | None = None
    high_voltage: bool = False

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__ so every consumer sees UTC pandas timestamps.
        object.__setattr__(self, "time", _utc(self.time, "RuntimeStatus.time"))
        for name in ("next_charge_start", "next_charge_end"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _utc(value, f"RuntimeStatus.{name}"))
        if (self.next_charge_start is None) != (self.next_charge_end is None):
            raise ValueError("RuntimeStatus.next_charge_start and next_charge_end: give both or neither")
        if self.endpoint_hour is not None and not 0 <= int(self.endpoint_hour) <= 23:
            raise ValueError(f"RuntimeStatus.endpoint_hour = {self.endpoint_hour}: must be 0..23 or None")

    @property
    def saving_today_eur(self) -> float:
        """What the battery saved today so far: the reference cost minus the actual cost, in EUR."""
        return self.cost_today_without_battery_eur - self.cost_today_eur


def next_charge_block(times: Sequence[datetime] | pd.DatetimeIndex, modes: Sequence[int] | Sequence[Mode],
                      minutes: int | None = None) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first contiguous block of IMPORT (grid charging) intervals in a plan.

    Parameters
    ----------
    times : interval starts of the plan, tz-aware, ascending (the first one is now).
    modes : the planned mode per interval (:class:`~dwars.env.modes.Mode` or its integer code).
    minutes : interval length; needed only when the block runs to the end of the plan and the plan's own
        spacing cannot tell it (a single interval). Default: the spacing of ``times``.

    Returns
    -------
    (start, end) in UTC, ``end`` exclusive (the start of the first interval after the block), or None when no
    interval is IMPORT. A block under way at ``times[0]`` counts: it is the one the home owner sees now.
    Intervals are contiguous when each starts where the previous one ends; a gap in the plan ends a block.
    """
    if len(times) != len(modes):
        raise ValueError(f"next_charge_block: {len(times)} times but {len(modes)} modes")
    index = [_utc(t, "next_charge_block times") for t in times]
    if minutes is not None:
        step = pd.Timedelta(minutes=int(minutes))
    elif len(index) > 1:
        step = index[1] - index[0]
    else:
        step = None
    first = next((i for i, m in enumerate(modes) if int(m) == Mode.IMPORT), None)
    if first is None:
        return None
    if step is None:
        raise ValueError("next_charge_block: the plan has one interval; give minutes to know where it ends")
    last = first
    while last + 1 < len(index) and int(modes[last + 1]) == Mode.IMPORT and index[last + 1] - index[last] == step:
        last += 1
    return index[first], index[last] + step
