"""The safety shield: whatever a controller proposes, the battery keeps the reserve, keeps every reachable
goal reachable, and trades only when the price difference beats the spread.

One shield serves training (``mask``: the allowed discrete actions), evaluation and the Pi runtime
(``check``: the proposal, or a repaired decision with the interventions that explain it). ``check`` and
``mask`` share one predicate, so an action the mask allows is never changed by ``check``.

Rules (stable ids)
------------------
``power_limit``, ``grid_limit``
    Import/Export power within the battery's limits and what the connection can supply.
``reserve``, ``endpoint``, ``night_end``
    After the interval the energy must be at least what the coming deadlines need, assuming the battery
    charges as hard as it can from then on: ``req = max(reserve, max_d(target_d - gains until d))``. The
    gains use a conservative forecast (PV x ``pv_factor``, load x ``load_factor``); the interval itself is
    judged on the same conservative forecast (MSC with less PV and more load drains more). When only
    charging keeps a deadline reachable the shield forces Import ("strakker laden"), at the power needed.
    A deadline that even charging at full power cannot reach is logged once as a warning and the shield
    then does the best possible (Import at full power).
``spread``, ``inkoop_only``, ``negative_price``
    Export only when ``export price now - cheapest known buy-back later >= spread``. The buy-back is the
    cheapest known import price later, or own PV: when under MSC and the expected forecast the battery
    would fill up (before draining to the reserve) and spill surplus to the grid anyway, the exported energy
    comes back from that surplus, at its export price, and the spread is then the base margin alone (no
    purchase fee; ``Tariff.solar_spread``). Never export for the
    ``inkoop-only`` profile, never at a negative export price (PV export is curtailed there instead).
    These rules judge only battery power that reaches the grid: a discharge no larger than the house's
    expected deficit (load - PV) is self-consumption at a chosen pace, not a trade.
    Grid charging only when it serves a goal due within 24 h, is forced by a goal, comes from own PV
    surplus, or ``the best later known price (import avoided, or export) - import price now >= spread``.
``stale_input``
    Missing, stale or non-finite inputs: fall back to MSC and say why.

Each intervention carries the time, rule, proposed and applied decision, the numbers that decided it and
a one-line reason in English and Dutch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from dwars.env.battery import charge_headroom_kw, discharge_headroom_kw
from dwars.env.goals import Deadline
from dwars.env.modes import ACTION_FRACTION, ACTION_MODES, ACTIONS, N_ACTIONS, Decision, Mode
from dwars.policy.base import Forecasts, Home, State

log = logging.getLogger(__name__)

RULES: tuple[str, ...] = ("power_limit", "grid_limit", "reserve", "endpoint", "night_end", "spread",
                          "inkoop_only", "negative_price", "stale_input")
TOL_KWH = 1e-6  # energy tolerance of the goal checks (float rounding)
GOAL_WINDOW_H = 24.0  # grid charging "for a goal" counts for deadlines due within this many hours
_TRADE_RULES = ("inkoop_only", "negative_price", "spread")


@dataclass(frozen=True)
class Intervention:
    """One change the shield made, with the numbers behind it and a reason in English and Dutch."""

    time: pd.Timestamp
    rule: str
    proposed: Decision
    applied: Decision
    numbers: dict[str, Any]
    reason_en: str
    reason_nl: str

    def to_record(self) -> dict[str, Any]:
        """JSON-ready form (the ``interventions`` entries of the decision log)."""
        def decision(d: Decision) -> dict[str, Any]:
            return {"mode": d.mode.name.lower(), "power_kw": round(d.power_kw, 4), "curtail_pv": d.curtail_pv}

        return {"time": self.time.isoformat(), "rule": self.rule, "proposed": decision(self.proposed),
                "applied": decision(self.applied), "numbers": self.numbers, "reason_en": self.reason_en,
                "reason_nl": self.reason_nl}


@dataclass(frozen=True)
class ShieldResult:
    """The decision to carry out (``applied``) and why it differs from ``proposed`` (``interventions``)."""

    proposed: Decision
    applied: Decision
    interventions: tuple[Intervention, ...] = ()

    @property
    def changed(self) -> bool:
        """True when mode or power was changed (curtailing PV at a negative price alone does not count)."""
        return (self.applied.mode, self.applied.power_kw) != (self.proposed.mode, self.proposed.power_kw)


@dataclass
class _Context:
    """Everything the rules need for one interval, computed once per check/mask."""

    time: pd.Timestamp
    stale: str | None
    energy_kwh: float = 0.0
    dt_h: float = 0.25
    pv_expected_kw: float = 0.0
    load_expected_kw: float = 0.0
    pv_low_kw: float = 0.0
    load_high_kw: float = 0.0
    import_now: float = 0.0
    export_now: float = 0.0
    buy_back: float | None = None
    buy_back_time: pd.Timestamp | None = None
    later_value: float | None = None
    required_kwh: float = 0.0
    required_rule: str = "reserve"
    required_deadline: Deadline | None = None
    goal_level_kwh: float = 0.0
    best_energy_kwh: float = 0.0
    # Expected MSC energy change, cumulative over the intervals 1..k: its running maximum and minimum.
    msc_path_max_kwh: np.ndarray | None = None
    msc_path_min_kwh: np.ndarray | None = None
    no_export_full_step: int = 0  # first interval the battery is full without exporting now (house deficit only)
    surplus_export_eur_per_kwh: np.ndarray | None = None  # export price where a PV surplus is expected, else -inf
    numbers: dict[str, Any] = field(default_factory=dict)


class Shield:
    """The safety shield of a home.

    Parameters
    ----------
    home : battery, tariff, goals and strategy profile.
    pv_factor : conservative PV = forecast x this (default 0.8: a 20 % shortfall).
    load_factor : conservative load = forecast x this (default 1.25).
    """

    def __init__(self, home: Home, pv_factor: float = 0.8, load_factor: float = 1.25) -> None:
        self.home = home
        self.pv_factor = pv_factor
        self.load_factor = load_factor
        self._grid_spread = home.spread_eur_per_kwh  # fixed per home; looked up for every action of every mask
        self._solar_spread = home.solar_spread_eur_per_kwh
        self._warned: set[pd.Timestamp] = set()

    # -- the shared predicate ---------------------------------------------------------------------------
    def _context(self, state: State, forecasts: Forecasts) -> _Context:
        stale = self._stale(state, forecasts)
        if stale is not None:
            return _Context(state.time, stale)
        b, dt = self.home.battery, state.dt_h
        pv = np.asarray(forecasts.pv_kw, dtype=float)
        load = np.asarray(forecasts.load_kw, dtype=float)
        pv_low, load_high = pv * self.pv_factor, load * self.load_factor
        imp, exp = forecasts.import_price_eur_per_kwh, forecasts.export_price_eur_per_kwh
        ctx = _Context(state.time, None, state.energy_kwh, dt, float(pv[0]), float(load[0]), float(pv_low[0]),
                       float(load_high[0]), float(imp[0]), float(exp[0]))
        if len(imp) > 1:
            j = int(np.argmin(imp[1:])) + 1
            ctx.buy_back, ctx.buy_back_time = float(imp[j]), forecasts.times[j]
            later = np.max(imp[1:])
            if self.home.exports_for_trading:
                later = max(later, float(np.max(exp[1:])))
            ctx.later_value = float(later)
            self._msc_outlook(ctx, pv[1:len(imp)], load[1:len(imp)], exp[1:])
        # Minimum energy after this interval so that charging flat out from the next one reaches every goal.
        gain = b.efficiency_one_way * np.clip(np.minimum(b.max_charge_kw, self.home.grid_limit_kw + pv_low - load_high),
                                              0.0, None) * dt
        gained = np.concatenate([[0.0], np.cumsum(gain[1:])])  # gained[k]: energy from intervals 1..k
        ctx.required_kwh, ctx.required_rule = b.reserve_kwh, "reserve"
        deficit = np.cumsum(np.clip(load - pv, 0.0, None)) * dt / b.efficiency_one_way
        ctx.goal_level_kwh = 0.0
        for k, d in forecasts.deadline_steps(state.minutes):
            target = min(b.capacity_kwh * d.soc_pct / 100.0, b.capacity_kwh)
            need = target - gained[k]
            if need > ctx.required_kwh + TOL_KWH:
                ctx.required_kwh, ctx.required_rule, ctx.required_deadline = need, d.kind, d
            if (k + 1) * dt <= GOAL_WINDOW_H:
                ctx.goal_level_kwh = max(ctx.goal_level_kwh, min(target + deficit[k], b.capacity_kwh))
        ctx.best_energy_kwh = self._energy_after(ctx, Mode.IMPORT, b.max_charge_kw)
        return ctx

    def _msc_outlook(self, ctx: _Context, pv: np.ndarray, load: np.ndarray, exp: np.ndarray) -> None:
        """Where the battery goes under MSC and the expected forecast, for the PV-refill buy-back. The spread
        rule is economics, not safety (the goal rules keep their conservative forecast): a wrong guess here
        costs some import at night, never a goal."""
        b, dt = self.home.battery, ctx.dt_h
        net = pv - load
        delta = np.where(net > 0, b.efficiency_one_way * np.minimum(net, b.max_charge_kw) * dt,
                         -np.minimum(-net, b.max_discharge_kw) * dt / b.efficiency_one_way)
        path = np.cumsum(delta)
        ctx.msc_path_max_kwh = np.maximum.accumulate(path)  # sorted: searchsorted finds "full"
        ctx.msc_path_min_kwh = np.minimum.accumulate(path)
        ctx.surplus_export_eur_per_kwh = np.where(net > 0, np.asarray(exp, dtype=float), -np.inf)
        no_export_kwh = self._energy_after(ctx, Mode.EXPORT, self._house_deficit_kw(ctx))
        ctx.no_export_full_step = int(np.searchsorted(ctx.msc_path_max_kwh, b.capacity_kwh - TOL_KWH - no_export_kwh,
                                                      side="left"))

    def _pv_refill_price(self, ctx: _Context, energy_after_kwh: float) -> float | None:
        """Price of the own PV that replaces energy exported now (EUR/kWh), or None when it cannot.

        Exported energy comes back from own PV only when, without the export, the battery would have filled up
        and spilled the surplus to the grid anyway: under MSC and the expected forecast the battery, starting
        from ``energy_after_kwh``, reaches full before it ever drains to the reserve. The export then shifts the
        moment the battery is full from ``f0`` (no export: only the house's deficit discharged now) to ``f``,
        and the surplus of the intervals in between is kept instead of exported: the replacement costs the
        highest export price among those surplus intervals.
        """
        if ctx.msc_path_max_kwh is None or ctx.msc_path_min_kwh is None or not len(ctx.msc_path_max_kwh):
            return None
        b = self.home.battery
        full_kwh = b.capacity_kwh - TOL_KWH
        # First interval at which energy_after + path >= full (the running maximum is sorted).
        f = int(np.searchsorted(ctx.msc_path_max_kwh, full_kwh - energy_after_kwh, side="left"))
        if f == len(ctx.msc_path_max_kwh):
            return None
        if f > 0 and energy_after_kwh + float(ctx.msc_path_min_kwh[f - 1]) <= b.reserve_kwh + TOL_KWH:
            return None
        f0 = ctx.no_export_full_step  # <= f: the higher, no-export path fills first
        price = float(np.max(ctx.surplus_export_eur_per_kwh[f0: f + 1]))
        return price if np.isfinite(price) else None

    def _export_buy_back(self, ctx: _Context, power_kw: float) -> tuple[float | None, str]:
        """Cheapest way to get exported energy back (EUR/kWh, spread included in the comparison) and how:
        'grid' (import later) or 'pv' (own surplus that would otherwise be exported)."""
        if ctx.buy_back is not None and ctx.export_now - ctx.buy_back >= self._spread("grid") - 1e-9:
            return ctx.buy_back, "grid"  # the grid buy-back already pays: no need to look at the sun
        pv = self._pv_refill_price(ctx, self._energy_after(ctx, Mode.EXPORT, power_kw))
        if pv is not None and (ctx.buy_back is None
                               or pv + self._spread("pv") < ctx.buy_back + self._spread("grid")):
            return pv, "pv"
        return ctx.buy_back, "grid"

    def _spread(self, buy_back_from: str) -> float:
        """The spread an export must beat (EUR/kWh): the full one against grid buy-back, the base margin
        against own PV (``Tariff.solar_spread``)."""
        return self._solar_spread if buy_back_from == "pv" else self._grid_spread

    def _stale(self, state: State, forecasts: Forecasts) -> str | None:
        if not np.isfinite(state.energy_kwh):
            return "battery state of charge unknown"
        if forecasts.horizon == 0 or forecasts.times[0] != state.time:
            return "forecasts are not for this interval"
        if forecasts.n_price_known == 0:
            return "no price known for this interval"
        k = forecasts.n_price_known
        checks = (("PV forecast", forecasts.pv_kw), ("load forecast", forecasts.load_kw),
                  ("import prices", forecasts.import_price_eur_per_kwh[:k]),
                  ("export prices", forecasts.export_price_eur_per_kwh[:k]))
        for what, values in checks:
            if not np.all(np.isfinite(values)):
                return f"{what} contains blanks"
        return None

    def _energy_after(self, ctx: _Context, mode: Mode, power_kw: float) -> float:
        """Energy at the end of the interval under the conservative forecast (the least it can be)."""
        b, dt, e = self.home.battery, ctx.dt_h, ctx.energy_kwh
        if mode == Mode.HOLD:
            return e
        if mode == Mode.IMPORT:
            supply = max(self.home.grid_limit_kw + ctx.pv_low_kw - ctx.load_high_kw, 0.0)
            charge = min(power_kw, supply, charge_headroom_kw(e, dt, b.capacity_kwh, b.max_charge_kw,
                                                              b.efficiency_one_way))
            return e + b.efficiency_one_way * charge * dt
        if mode == Mode.EXPORT:
            drain = power_kw
        else:  # MSC: follows the house; conservative = less PV, more load
            net = ctx.pv_low_kw - ctx.load_high_kw
            if net >= 0:
                charge = min(net, charge_headroom_kw(e, dt, b.capacity_kwh, b.max_charge_kw, b.efficiency_one_way))
                return e + b.efficiency_one_way * charge * dt
            drain = -net
        discharge = min(drain, discharge_headroom_kw(e, dt, b.reserve_kwh, b.max_discharge_kw, b.efficiency_one_way))
        return e - discharge * dt / b.efficiency_one_way

    def _goal_floor(self, ctx: _Context) -> float:
        # An unreachable goal cannot be demanded: then the best possible is what is required.
        return min(ctx.required_kwh, ctx.best_energy_kwh) - TOL_KWH

    def _violations(self, ctx: _Context, mode: Mode, power_kw: float) -> list[str]:
        """Rule ids a (mode, power) breaks in this context (empty: allowed)."""
        if ctx.stale is not None:
            return [] if mode == Mode.MSC else ["stale_input"]
        b = self.home.battery
        out: list[str] = []
        if mode == Mode.IMPORT and power_kw > b.max_charge_kw + 1e-9:
            out.append("power_limit")
        if mode == Mode.EXPORT and power_kw > b.max_discharge_kw + 1e-9:
            out.append("power_limit")
        if mode == Mode.IMPORT and power_kw > max(self.home.grid_limit_kw + ctx.pv_expected_kw
                                                  - ctx.load_expected_kw, 0.0) + 1e-9:
            out.append("grid_limit")
        if mode == Mode.EXPORT and power_kw > self._reserve_headroom_kw(ctx) + 1e-9:
            out.append("reserve")
        if mode == Mode.EXPORT and power_kw > self._house_deficit_kw(ctx) + 1e-9:
            # Only battery energy that reaches the grid is a trade: a discharge the house uses up itself is
            # self-consumption at a chosen pace (between Hold and MSC), whatever the prices.
            if not self.home.exports_for_trading:
                out.append("inkoop_only")
            if ctx.export_now < 0:
                out.append("negative_price")
            if self.home.exports_for_trading and ctx.export_now >= 0:  # else the spread is moot
                buy_back, source = self._export_buy_back(ctx, power_kw)
                if buy_back is None or ctx.export_now - buy_back < self._spread(source) - 1e-9:
                    out.append("spread")
        if mode == Mode.IMPORT and power_kw > 0 and not self._import_justified(ctx, power_kw):
            out.append("spread")
        if self._energy_after(ctx, mode, power_kw) < self._goal_floor(ctx):
            out.append(ctx.required_rule)
        return out

    @staticmethod
    def _house_deficit_kw(ctx: _Context) -> float:
        """What the house needs beyond the expected PV (kW): a discharge up to this stays in the house."""
        return max(ctx.load_expected_kw - ctx.pv_expected_kw, 0.0)

    def _reserve_headroom_kw(self, ctx: _Context) -> float:
        """Discharge power that this interval can deliver before the battery reaches the reserve."""
        b = self.home.battery
        return float(discharge_headroom_kw(ctx.energy_kwh, ctx.dt_h, b.reserve_kwh, b.max_discharge_kw,
                                           b.efficiency_one_way))

    def _import_justified(self, ctx: _Context, power_kw: float) -> bool:
        if power_kw <= max(ctx.pv_expected_kw - ctx.load_expected_kw, 0.0) + 1e-9:
            return True  # own PV surplus: no grid energy
        if ctx.energy_kwh < ctx.goal_level_kwh - TOL_KWH:
            return True  # charging for a goal due within a day
        floor = self._goal_floor(ctx)
        if max(self._energy_after(ctx, Mode.MSC, 0.0), ctx.energy_kwh) < floor:
            return True  # forced by a goal
        spread = self._grid_spread
        return ctx.later_value is not None and ctx.later_value - ctx.import_now >= spread - 1e-9

    # -- public API -------------------------------------------------------------------------------------
    def mask(self, state: State, forecasts: Forecasts) -> np.ndarray:
        """Allowed discrete actions (bool, length ``N_ACTIONS``), consistent with :meth:`check`.

        The same predicate as :meth:`_violations`, evaluated for all power levels of a mode at once (the
        rules are thresholds in the power, except the export spread, which is checked level by level).
        """
        ctx = self._context(state, forecasts)
        b = self.home.battery
        allowed = np.zeros(N_ACTIONS, dtype=bool)
        if ctx.stale is not None:
            allowed[ACTION_MODES == Mode.MSC] = True
            return allowed
        floor = self._goal_floor(ctx)
        allowed[ACTION_MODES == Mode.MSC] = self._energy_after(ctx, Mode.MSC, 0.0) >= floor
        allowed[ACTION_MODES == Mode.HOLD] = ctx.energy_kwh >= floor
        e, dt, eff = ctx.energy_kwh, ctx.dt_h, b.efficiency_one_way
        # Import: limits, a reason to use grid energy, and the goals (as in _energy_after).
        imp = ACTION_MODES == Mode.IMPORT
        power = ACTION_FRACTION[imp] * b.max_charge_kw
        supply = max(self.home.grid_limit_kw + ctx.pv_low_kw - ctx.load_high_kw, 0.0)
        charge = np.minimum(np.minimum(power, supply),
                            charge_headroom_kw(e, dt, b.capacity_kwh, b.max_charge_kw, eff))
        reason = (power <= max(ctx.pv_expected_kw - ctx.load_expected_kw, 0.0) + 1e-9) | bool(
            self._import_justified(ctx, np.inf))
        allowed[imp] = ((power <= b.max_charge_kw + 1e-9) & reason
                        & (power <= max(self.home.grid_limit_kw + ctx.pv_expected_kw - ctx.load_expected_kw, 0.0)
                           + 1e-9)
                        & (e + eff * charge * dt >= floor))
        # Export: limits, reserve, the goals, and the trade rules for what reaches the grid.
        exp = ACTION_MODES == Mode.EXPORT
        power = ACTION_FRACTION[exp] * b.max_discharge_kw
        discharge = np.minimum(power, discharge_headroom_kw(e, dt, b.reserve_kwh, b.max_discharge_kw, eff))
        ok = ((power <= b.max_discharge_kw + 1e-9) & (power <= self._reserve_headroom_kw(ctx) + 1e-9)
              & (e - discharge * dt / eff >= floor))
        trade = power > self._house_deficit_kw(ctx) + 1e-9
        if trade.any():
            if not self.home.exports_for_trading or ctx.export_now < 0:
                ok &= ~trade
            else:
                for k in np.flatnonzero(ok & trade):
                    buy_back, source = self._export_buy_back(ctx, float(power[k]))
                    ok[k] = buy_back is not None and ctx.export_now - buy_back >= self._spread(source) - 1e-9
        allowed[exp] = ok
        if not allowed.any():  # cannot happen by construction; never leave a policy without a move
            allowed[ACTIONS.index((Mode.IMPORT, 1.0))] = True
        return allowed

    def check(self, state: State, forecasts: Forecasts, proposed: Decision) -> ShieldResult:
        """The proposal if it breaks no rule, else a repaired decision and the interventions behind it."""
        ctx = self._context(state, forecasts)
        broken = self._violations(ctx, proposed.mode, proposed.power_kw)
        curtail = ctx.stale is None and ctx.export_now < 0
        if not broken:
            applied = replace(proposed, curtail_pv=True) if curtail and not proposed.curtail_pv else proposed
            if applied is proposed or ctx.pv_expected_kw <= ctx.load_expected_kw:
                return ShieldResult(proposed, applied)
            note = self._intervention(ctx, "negative_price", proposed, applied)
            applied = replace(applied, reason=f"{proposed.reason}; shield: {note.reason_en}".lstrip("; "))
            return ShieldResult(proposed, applied, (replace(note, applied=applied),))
        mode, power = proposed.mode, proposed.power_kw
        rules: list[str] = []
        if ctx.stale is not None:
            mode, power, rules = Mode.MSC, 0.0, ["stale_input"]
        else:
            b = self.home.battery
            if "power_limit" in broken:
                power = min(power, b.max_charge_kw if mode == Mode.IMPORT else b.max_discharge_kw)
                rules.append("power_limit")
            if "grid_limit" in broken:
                power = min(power, max(self.home.grid_limit_kw + ctx.pv_expected_kw - ctx.load_expected_kw, 0.0))
                rules.append("grid_limit")
            if "reserve" in broken and mode == Mode.EXPORT:
                power = self._reserve_headroom_kw(ctx)
                rules.append("reserve")
                if power < 0.01:
                    mode, power = Mode.MSC, 0.0
            trade = [r for r in _TRADE_RULES if r in broken]
            if trade:
                rules.extend(trade)
                mode, power = Mode.MSC, 0.0
            if self._energy_after(ctx, mode, power) < self._goal_floor(ctx):
                rules.append(ctx.required_rule)
                mode, power = self._keep_goal(ctx, mode, power)
        applied = Decision(mode, power, "", curtail_pv=curtail or (proposed.curtail_pv and mode != Mode.EXPORT))
        notes = [self._intervention(ctx, rule, proposed, applied) for rule in dict.fromkeys(rules)]
        applied = replace(applied, reason=f"shield: {notes[0].reason_en}" if notes else proposed.reason)
        notes = [replace(n, applied=applied) for n in notes]
        return ShieldResult(proposed, applied, tuple(notes))

    def _keep_goal(self, ctx: _Context, mode: Mode, power: float) -> tuple[Mode, float]:
        """The gentlest change that keeps the required energy: less export, then Hold, then Import."""
        b, dt, floor = self.home.battery, ctx.dt_h, self._goal_floor(ctx)
        if mode == Mode.EXPORT:
            allowed = max(ctx.energy_kwh - floor - TOL_KWH, 0.0) * b.efficiency_one_way / dt
            if allowed > 0.01:
                return Mode.EXPORT, min(power, allowed)
            mode = Mode.MSC
        if mode == Mode.MSC and self._energy_after(ctx, Mode.MSC, 0.0) >= floor:
            return Mode.MSC, 0.0
        if self._energy_after(ctx, Mode.HOLD, 0.0) >= floor:
            return Mode.HOLD, 0.0
        if ctx.required_kwh > ctx.best_energy_kwh + TOL_KWH:
            self._warn_unreachable(ctx)
            return Mode.IMPORT, b.max_charge_kw
        need = (floor + 2 * TOL_KWH - ctx.energy_kwh) / (b.efficiency_one_way * dt)
        power = min(max(need, power if mode == Mode.IMPORT else 0.0), b.max_charge_kw)
        if self._energy_after(ctx, Mode.IMPORT, power) < floor:
            power = b.max_charge_kw
        return Mode.IMPORT, power

    def _warn_unreachable(self, ctx: _Context) -> None:
        d = ctx.required_deadline
        if d is not None and d.time not in self._warned:
            self._warned.add(d.time)
            local = d.time.tz_convert(self.home.timezone)
            log.warning("%s at %s (%.0f %%) cannot be reached even charging at full power; doing the best possible",
                        d.kind, f"{local:%Y-%m-%d %H:%M}", d.soc_pct)

    # -- reasons ----------------------------------------------------------------------------------------
    def _intervention(self, ctx: _Context, rule: str, proposed: Decision, applied: Decision) -> Intervention:
        b = self.home.battery
        numbers: dict[str, Any] = {"energy_kwh": round(ctx.energy_kwh, 4)}
        en = nl = ""
        if rule == "stale_input":
            numbers["problem"] = ctx.stale
            en = f"inputs missing or stale ({ctx.stale}): falling back to self-consumption"
            nl = f"invoer ontbreekt of is verouderd ({ctx.stale}): terug naar eigen verbruik"
        elif rule == "power_limit":
            limit = b.max_charge_kw if proposed.mode == Mode.IMPORT else b.max_discharge_kw
            numbers.update(requested_kw=proposed.power_kw, limit_kw=limit)
            en, nl = f"power limited to {limit:g} kW", f"vermogen begrensd op {limit:g} kW"
        elif rule == "grid_limit":
            numbers.update(requested_kw=proposed.power_kw, grid_limit_kw=self.home.grid_limit_kw)
            en = f"charging limited by the grid connection ({self.home.grid_limit_kw:g} kW)"
            nl = f"laden begrensd door de aansluiting ({self.home.grid_limit_kw:g} kW)"
        elif rule == "inkoop_only":
            en, nl = "no export for trading: profile inkoop-only", "geen teruglevering voor handel: profiel inkoop-only"
        elif rule == "negative_price":
            numbers["export_price"] = round(ctx.export_now, 5)
            en = f"no export at a negative export price ({ctx.export_now:.3f} EUR/kWh): solar export curtailed"
            nl = (f"niet terugleveren bij een negatieve prijs (€ {ctx.export_now:.3f}/kWh): "
                  "zonnestroom-export beperkt").replace(".", ",")
        elif rule == "spread":
            spread = self.home.spread_eur_per_kwh
            if proposed.mode == Mode.EXPORT:
                buy_back, source = self._export_buy_back(ctx, proposed.power_kw)
                spread = self._spread(source)
                diff = None if buy_back is None else ctx.export_now - buy_back
                numbers.update(export_price=round(ctx.export_now, 5), buy_back_price=buy_back, buy_back_from=source,
                               spread=spread)
            else:
                diff = None if ctx.later_value is None else ctx.later_value - ctx.import_now
                numbers.update(import_price=round(ctx.import_now, 5), later_value=ctx.later_value, spread=spread)
            numbers["difference"] = None if diff is None else round(diff, 5)
            if diff is None:
                en = "no trade: no later price known yet to trade against"
                nl = "geen handel: nog geen latere prijs bekend om tegen te handelen"
            else:
                en = f"no trade: price difference {diff:.3f} EUR/kWh is below the spread {spread:.3f}"
                nl = (f"geen handel: prijsverschil € {diff:.3f}/kWh is kleiner dan de spread "
                      f"€ {spread:.3f}").replace(".", ",")
        else:  # reserve / endpoint / night_end
            numbers.update(required_kwh=round(ctx.required_kwh, 4), reserve_kwh=b.reserve_kwh)
            d = ctx.required_deadline
            if rule == "reserve" or d is None:
                en = f"kept the reserve of {b.reserve_kwh:.1f} kWh for backup power"
                nl = f"reserve van {b.reserve_kwh:.1f} kWh bewaard voor noodstroom".replace(".", ",")
            else:
                local = d.time.tz_convert(self.home.timezone)
                numbers.update(deadline=d.time.isoformat(), target_pct=d.soc_pct)
                name_en = "endpoint" if d.kind == "endpoint" else "night end"
                name_nl = "eindpunt" if d.kind == "endpoint" else "nachteinde"
                action_en = "charging now" if applied.mode == Mode.IMPORT else "keeping charge"
                action_nl = "nu laden" if applied.mode == Mode.IMPORT else "lading vasthouden"
                en = (f"{action_en}: the {local:%H:%M} {name_en} ({d.soc_pct:.0f} %) needs at least "
                      f"{ctx.required_kwh:.1f} kWh after this interval")
                nl = (f"{action_nl}: het {name_nl} van {local:%H:%M} ({d.soc_pct:.0f} %) vraagt minstens "
                      f"{ctx.required_kwh:.1f} kWh na dit interval").replace(".", ",")
        return Intervention(ctx.time, rule, proposed, applied, numbers, en, nl)
