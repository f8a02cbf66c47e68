"""The DWARS rule controller: the product manual's rules, decided afresh every interval from state and forecasts.

The rules, in the order they are tried (the first that applies decides):

1. **Goals first.** For every deadline in the horizon (daily endpoint, night end), in time order, plan the
   grid charging it still needs in the *cheapest* intervals between now and the deadline. If the current
   interval is in a plan, Import at full charge power. If a deadline cannot be reached even by charging in
   every remaining interval, Import at full power now and say so.
2. **Buy low, use or sell high** (spread rule). Import now when a later known interval is at least the
   spread dearer and the battery will be short of the energy used or sold then, and now is among the cheapest
   chances to buy before that.
3. **Sell high, buy back low** (spread rule). Export when the export price now beats the cheapest later
   buy-back (import price) by at least the spread, the profile exports for trading (``inkoop-only`` never
   does), the battery holds energy above the reserve, every deadline stays reachable, and now is among the
   dearest chances to sell before the buy-back.
4. **Sun first.** Otherwise MSC: own PV serves the house first, then the battery, then the grid.

In every mode PV export is curtailed when the export price is negative (``curtail_pv``; in MSC the battery
still charges from the surplus). Every Decision carries a one-line English reason.

Energy bookkeeping (the plan)
-----------------------------
The plan works on the forecast, per interval ``j`` of length ``dt_h``, with the battery's one-way efficiency
``eta`` and its AC power limits, exactly as :func:`dwars.env.dispatch.simulate_interval` would play it out:

- ``surplus_j = max(pv_j - load_j, 0)``, ``deficit_j = max(load_j - pv_j, 0)`` (forecast mean kW).
- MSC changes the stored energy by ``msc_kwh_j = eta * min(surplus_j, max_charge_kw) * dt_h
  - min(deficit_j, max_discharge_kw) * dt_h / eta``: PV surplus charging minus the house deficit the
  battery covers.
- IMPORT at full power stores ``import_kwh_j = eta * charge_kw_j * dt_h`` with ``charge_kw_j =
  min(max_charge_kw, grid_limit_kw + pv_j - load_j)`` (PV first, then the grid, within the connection). The
  house is then served by PV and grid, so an Import interval *replaces* that interval's MSC change; it
  does not add to it.
- The energy runs forward from ``state.energy_kwh``, interval by interval, and is held within
  ``[reserve, capacity]`` after each interval (a deficit while at the reserve comes from the grid; PV surplus
  into a full battery is exported). These bounds are why the plan simulates instead of summing: energy
  bought before a sunny spell that fills the battery anyway is lost, and a deficit while at the reserve
  does not need to be bought back.

For a deadline ending interval ``k`` with target ``soc_pct / 100 * capacity_kwh``, the candidate intervals
``0..k`` are ranked by known import price (ties: earlier first); intervals whose price is not yet known
(beyond K) rank after all known ones, in time order, so they are a last resort and are re-ranked as soon as
their prices are published. The plan is the *shortest prefix* of that ranking which, charging there at full
power and running MSC elsewhere, ends interval ``k`` at or above the target (found by bisection: adding an
Import interval never lowers any later energy). Deadlines are planned in time order; intervals an earlier
deadline already charges in count for the later ones. Because the plan is redone every interval, forecast
errors are corrected as they show, and as the deadline nears fewer cheap intervals remain, so the
controller charges in dearer ones ("strakker laden"); when every remaining interval is needed, it charges now.

Trading uses prices as the home sees them (EUR/kWh): the import price (incl. taxes) for buying and for a
purchase avoided, the export price for a sale, compared with :func:`dwars.env.tariff.trade_allowed`.

- Buy (rule 2): the value of a later known interval ``j`` is its import price when the house has a deficit
  then (the battery avoids that purchase) and its export price when selling then would itself pass the export
  rule (exports allowed and the export price beats a later buy-back by the spread). The later intervals
  whose value beats the current import price by the spread are the *dear* ones. The battery should enter the
  first dear interval holding ``reserve + U`` (at most the capacity), ``U`` being the energy it delivers
  in the dear intervals before the next chance to buy as cheaply as now (the house deficit ``/ eta``, or a
  full-power discharge for a sale). The cheapest known intervals before the first dear one, no dearer
  than now, are planned to get there as for a deadline; Import when now is in that plan.
- Sell (rule 3): the energy that must stay is ``keep = max(reserve, target_d - sum(import_kwh_j for
  j = 1..k_d))`` over all deadlines ``d``: what each deadline needs minus what full-power charging can still
  store before it. Export at full discharge power, limited so that the energy after this interval stays at
  or above ``keep``, and only when now is among the ``n`` dearest export prices before the cheapest buy-back,
  ``n`` being the full-power intervals the sellable energy ``energy - keep`` lasts.

Known simplifications: the plan is only as good as the PV and load forecasts; an Import interval is charged
at full power even when a fraction of it would do (the overshoot is less than one interval of charging);
the export rule compares with the cheapest buy-back in the known horizon even when a deadline makes the
battery recharge earlier (the deadline plan then charges in the cheapest intervals before that deadline);
house use in MSC between the trades is not reserved for; the spread rule, as the manual states it, does not
price the round-trip loss (about 10 % of the buy price) or battery wear, so trades near the spread (and most
``maximaal`` trades, at half the spread) barely pay or lose money.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dwars.env.goals import Deadline
from dwars.env.modes import Decision, Mode
from dwars.env.tariff import trade_allowed
from dwars.policy.base import Controller, Forecasts, Home, State

__all__ = ["DeadlinePlan", "EnergyBook", "RuleController", "plan_cheapest"]

#: Energy tolerance (kWh) for "target reached": absorbs float rounding of the forward simulation.
TOL_KWH = 1e-6
#: Powers below this (kW) are treated as zero: no Import/Export is issued for them.
MIN_POWER_KW = 1e-3

_KIND_LABEL = {"endpoint": "endpoint", "night_end": "night end"}


@dataclass(frozen=True)
class EnergyBook:
    """Per-interval energy bookkeeping of the forecast (see the module text); attributes are per interval j.

    Attributes
    ----------
    dt_h : interval length in hours.
    reserve_kwh, capacity_kwh : bounds of the stored energy.
    msc_kwh : change of stored energy under MSC (PV surplus in, house deficit out), kWh.
    import_kwh : change of stored energy under Import at ``charge_kw``, kWh (>= 0).
    charge_kw : full Import power (battery limit and grid connection), AC kW.
    battery_use_kwh : energy drawn from storage to cover the house deficit under MSC, kWh (>= 0).
    """

    dt_h: float
    reserve_kwh: float
    capacity_kwh: float
    msc_kwh: tuple[float, ...]
    import_kwh: tuple[float, ...]
    charge_kw: tuple[float, ...]
    battery_use_kwh: tuple[float, ...]

    @classmethod
    def from_forecasts(cls, home: Home, forecasts: Forecasts, dt_h: float) -> EnergyBook:
        """The bookkeeping of ``forecasts`` for ``home`` (NaN forecasts count as 0 kW)."""
        b = home.battery
        eta = b.efficiency_one_way
        pv_kw = np.nan_to_num(np.asarray(forecasts.pv_kw, dtype=float), nan=0.0)
        load_kw = np.nan_to_num(np.asarray(forecasts.load_kw, dtype=float), nan=0.0)
        surplus_kw = np.maximum(pv_kw - load_kw, 0.0)
        deficit_kw = np.maximum(load_kw - pv_kw, 0.0)
        # The connection caps what Import may draw; PV on site adds to what can reach the battery.
        charge_kw = np.minimum(b.max_charge_kw, np.maximum(home.grid_limit_kw + pv_kw - load_kw, 0.0))
        use_kwh = np.minimum(deficit_kw, b.max_discharge_kw) * dt_h / eta
        msc_kwh = eta * np.minimum(surplus_kw, b.max_charge_kw) * dt_h - use_kwh
        # Lists of Python floats: the forward simulation is a short scalar loop, faster than numpy here.
        return cls(
            dt_h=dt_h,
            reserve_kwh=b.reserve_kwh,
            capacity_kwh=b.capacity_kwh,
            msc_kwh=tuple(msc_kwh.tolist()),
            import_kwh=tuple((eta * charge_kw * dt_h).tolist()),
            charge_kw=tuple(charge_kw.tolist()),
            battery_use_kwh=tuple(use_kwh.tolist()),
        )

    def energy_at_end(self, energy_kwh: float, last: int, charging: set[int] | frozenset[int]) -> float:
        """Expected stored energy (kWh) at the end of interval ``last`` (>= -1), from ``energy_kwh`` now.

        Intervals in ``charging`` Import at full power, the others run MSC; the energy stays within
        [reserve, capacity] as in :func:`dwars.env.battery.battery_step` (starting outside, it may only move
        towards the range).
        """
        e = energy_kwh
        for j in range(last + 1):
            delta = self.import_kwh[j] if j in charging else self.msc_kwh[j]
            e = min(e + delta, max(self.capacity_kwh, e)) if delta >= 0 else max(e + delta, min(self.reserve_kwh, e))
        return e

    def gain_kwh(self, j: int) -> float:
        """How much more Import stores than MSC in interval ``j`` (0 when PV already charges at full power)."""
        return self.import_kwh[j] - self.msc_kwh[j]


def plan_cheapest(
    book: EnergyBook,
    energy_kwh: float,
    last: int,
    target_kwh: float,
    ranked: list[int],
    fixed: frozenset[int] = frozenset(),
) -> tuple[list[int], bool]:
    """The fewest leading intervals of ``ranked`` whose full-power Import reaches ``target_kwh`` after ``last``.

    Parameters
    ----------
    book : the energy bookkeeping of the forecast.
    energy_kwh : stored energy now.
    last : the interval at whose end the target applies.
    target_kwh : energy wanted then.
    ranked : candidate intervals, best (cheapest) first.
    fixed : intervals already charging for another reason.

    Returns
    -------
    (selected, reachable)
        ``selected`` is a prefix of ``ranked``; when even all of ``ranked`` falls short, it is all of them and
        ``reachable`` is False.
    """

    def reaches(n: int) -> bool:
        return book.energy_at_end(energy_kwh, last, fixed | set(ranked[:n])) >= target_kwh - TOL_KWH

    if reaches(0):
        return [], True
    if not reaches(len(ranked)):
        return list(ranked), False
    # Monotone in n (an added Import interval never lowers a later energy): bisect for the shortest prefix.
    lo, hi = 0, len(ranked)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return list(ranked[:hi]), True


@dataclass(frozen=True)
class DeadlinePlan:
    """The charging planned for one deadline.

    Attributes
    ----------
    deadline : the goal.
    k : the forecast interval at whose end it applies.
    target_kwh : energy wanted then.
    selected : intervals planned for grid charging, cheapest first.
    n_candidates : intervals that were left to choose from.
    reachable : False when even charging in every remaining interval falls short.
    """

    deadline: Deadline
    k: int
    target_kwh: float
    selected: tuple[int, ...]
    n_candidates: int
    reachable: bool


class RuleController(Controller):
    """The DWARS rules of the product manual (see the module text for the bookkeeping).

    Rules
    -----
    - Goals: charge for the next endpoint and night end in the cheapest known intervals before them; charge
      tighter as the deadline nears; charge at full power when a deadline cannot be reached otherwise.
    - Buy for later use or sale only when the later price beats the current import price by the spread.
    - Export only above the reserve, with every deadline still reachable, when the profile exports for trading
      and the export price beats the cheapest later buy-back by the spread.
    - Otherwise MSC (sun first).
    - Curtail PV export at a negative export price.

    The controller keeps no state between intervals: each decision depends only on ``state`` and
    ``forecasts``.
    """

    name = "rule"

    def decide(self, state: State, forecasts: Forecasts) -> Decision:
        horizon = forecasts.horizon
        if horizon == 0:
            return Decision(Mode.MSC, 0.0, "self-consumption (no forecast)")
        dt_h = state.dt_h
        book = EnergyBook.from_forecasts(self.home, forecasts, dt_h)
        import_eur, export_eur, n_known = self._known_prices(forecasts)
        energy_kwh = float(state.energy_kwh)
        curtail = n_known > 0 and export_eur[0] < 0.0

        chosen, planned = self._goals(state, forecasts, book, energy_kwh, import_eur, n_known)
        if chosen is None:
            chosen = self._buy(forecasts, book, energy_kwh, import_eur, export_eur, n_known, planned)
        note = ""
        if chosen is None:
            chosen, note = self._sell(state, forecasts, book, energy_kwh, import_eur, export_eur, n_known)
        if chosen is None:
            chosen = self._self_consumption(book, note)
        if curtail:
            reason = f"{chosen.reason}; PV export curtailed at export price {export_eur[0]:.3f} EUR/kWh"
            chosen = Decision(chosen.mode, chosen.power_kw, reason, curtail_pv=True)
        return chosen

    # ------------------------------------------------------------------------------------------------
    # Rule 1: goals
    # ------------------------------------------------------------------------------------------------

    def _goals(
        self,
        state: State,
        forecasts: Forecasts,
        book: EnergyBook,
        energy_kwh: float,
        import_eur: list[float],
        n_known: int,
    ) -> tuple[Decision | None, frozenset[int]]:
        """The Import decision of the deadline plans (or None), and every interval those plans charge in."""
        plans = self.plan_deadlines(state, forecasts, book, import_eur, n_known)
        fixed = frozenset(j for p in plans for j in p.selected)
        for plan in plans:
            if not plan.reachable:
                where = self._deadline_words(plan.deadline)
                decision = self._import(
                    book, energy_kwh, f"charging at full power: the {where} ({plan.deadline.soc_pct:g} %) "
                    "cannot be reached in time")
                if decision is not None:
                    return decision, fixed
        for plan in plans:
            if 0 in plan.selected:
                where = self._deadline_words(plan.deadline)
                n = len(plan.selected)
                if n == plan.n_candidates:
                    reason = f"charging: all {_count(n, state.minutes)} left before the {where} are needed"
                else:
                    reason = f"charging: cheapest {_count(n, state.minutes)} before the {where}"
                decision = self._import(book, energy_kwh, reason)
                if decision is not None:
                    return decision, fixed
        return None, fixed

    def plan_deadlines(
        self,
        state: State,
        forecasts: Forecasts,
        book: EnergyBook | None = None,
        import_eur: list[float] | None = None,
        n_known: int | None = None,
    ) -> list[DeadlinePlan]:
        """The charging plan of every deadline in the horizon, in time order (see the module text)."""
        if book is None:
            book = EnergyBook.from_forecasts(self.home, forecasts, state.dt_h)
        if import_eur is None or n_known is None:
            import_eur, _, n_known = self._known_prices(forecasts)
        capacity_kwh = self.home.battery.capacity_kwh
        energy_kwh = float(state.energy_kwh)
        steps = sorted(forecasts.deadline_steps(state.minutes), key=lambda kd: (kd[0], kd[1].kind))
        fixed: frozenset[int] = frozenset()
        plans: list[DeadlinePlan] = []
        for k, deadline in steps:
            target_kwh = min(max(deadline.soc_pct, 0.0) / 100.0 * capacity_kwh, capacity_kwh)
            candidates = [j for j in range(k + 1) if j not in fixed and book.gain_kwh(j) > TOL_KWH]
            ranked = _rank_by_price(candidates, import_eur, n_known)
            selected, reachable = plan_cheapest(book, energy_kwh, k, target_kwh, ranked, fixed)
            plans.append(DeadlinePlan(deadline, k, target_kwh, tuple(selected), len(ranked), reachable))
            fixed = fixed | set(selected)
        return plans

    # ------------------------------------------------------------------------------------------------
    # Rule 2: buy low, use or sell high
    # ------------------------------------------------------------------------------------------------

    def _buy(
        self,
        forecasts: Forecasts,
        book: EnergyBook,
        energy_kwh: float,
        import_eur: list[float],
        export_eur: list[float],
        n_known: int,
        fixed: frozenset[int],
    ) -> Decision | None:
        if n_known < 2:
            return None  # nothing later is known to compare with
        spread = self.home.spread_eur_per_kwh
        battery = self.home.battery
        price_now = import_eur[0]
        full_discharge_kwh = battery.max_discharge_kw * book.dt_h / battery.efficiency_one_way
        sells = self._sell_moments(import_eur, export_eur, n_known)
        # dear interval -> (value EUR/kWh, energy the battery delivers then in kWh)
        dear: dict[int, tuple[float, float]] = {}
        for j in range(1, n_known):
            if sells[j] and trade_allowed(price_now, export_eur[j], spread):
                dear[j] = (export_eur[j], full_discharge_kwh)
            elif book.battery_use_kwh[j] > 0 and trade_allowed(price_now, import_eur[j], spread):
                dear[j] = (import_eur[j], book.battery_use_kwh[j])
        if not dear:
            return None
        first = min(dear)
        # Energy for the dear intervals up to the next chance to buy as cheaply as now; after that, buy then.
        again = next((j for j in range(first + 1, n_known) if import_eur[j] <= price_now), n_known)
        dear = {j: v for j, v in dear.items() if j < again}
        needed_kwh = sum(used for _, used in dear.values())
        best_j = max(dear, key=lambda j: (dear[j][0], -j))
        best_value = dear[best_j][0]
        target_kwh = min(battery.reserve_kwh + needed_kwh, battery.capacity_kwh)
        candidates = [j for j in range(first) if import_eur[j] <= price_now and j not in fixed
                      and book.gain_kwh(j) > TOL_KWH]
        ranked = _rank_by_price(candidates, import_eur, n_known)
        selected, _ = plan_cheapest(book, energy_kwh, first - 1, target_kwh, ranked, fixed)
        if 0 not in selected:
            return None
        when = _clock(forecasts.times[best_j], self.home.timezone)
        reason = (f"buying: {price_now:.2f} EUR/kWh now vs {best_value:.2f} at {when} "
                  f"beats the spread of {spread:.2f}")
        return self._import(book, energy_kwh, reason)

    def _sell_moments(self, import_eur: list[float], export_eur: list[float], n_known: int) -> list[bool]:
        """Per known interval: would the export rule's price test pass there (exports allowed, buy-back later)?"""
        out = [False] * n_known
        if not self.home.exports_for_trading:
            return out
        spread = self.home.spread_eur_per_kwh
        cheapest_after = math.inf
        for j in range(n_known - 1, -1, -1):
            out[j] = cheapest_after < math.inf and bool(trade_allowed(cheapest_after, export_eur[j], spread))
            cheapest_after = min(cheapest_after, import_eur[j])
        return out

    # ------------------------------------------------------------------------------------------------
    # Rule 3: sell high, buy back low
    # ------------------------------------------------------------------------------------------------

    def _sell(
        self,
        state: State,
        forecasts: Forecasts,
        book: EnergyBook,
        energy_kwh: float,
        import_eur: list[float],
        export_eur: list[float],
        n_known: int,
    ) -> tuple[Decision | None, str]:
        """The Export decision (or None) and, when a paying export is refused, a note saying why."""
        if n_known < 2:
            return None, ""
        spread = self.home.spread_eur_per_kwh
        buyback_j = 1 + int(np.argmin(import_eur[1:n_known]))
        buyback_eur = import_eur[buyback_j]
        sell_now = export_eur[0]
        if not trade_allowed(buyback_eur, sell_now, spread):
            return None, ""
        if not self.home.exports_for_trading:
            return None, f"profile {self.home.profile} never exports"
        battery = self.home.battery
        if energy_kwh <= battery.reserve_kwh + TOL_KWH:
            return None, "nothing above the reserve to export"
        keep_kwh, keeper = self.energy_to_keep_kwh(state, forecasts, book)
        sellable_kwh = energy_kwh - keep_kwh
        if sellable_kwh <= TOL_KWH:
            why = f"the {self._deadline_words(keeper)} needs the energy" if keeper else "nothing above the reserve"
            return None, f"export refused: {why}"
        load_now_kw = float(np.nan_to_num(forecasts.load_kw[0], nan=0.0))
        power_kw = float(battery.max_discharge_kw_now(energy_kwh, book.dt_h, floor_kwh=keep_kwh))
        power_kw = min(power_kw, self.home.grid_limit_kw + max(load_now_kw, 0.0))
        if power_kw < MIN_POWER_KW:
            return None, "export refused: too little energy to spare"
        # Sell in the dearest moments before the buy-back: as many as the sellable energy lasts at full power.
        full_slot_kwh = battery.max_discharge_kw * book.dt_h / battery.efficiency_one_way
        n_slots = max(1, math.ceil(sellable_kwh / full_slot_kwh - 1e-9))
        slots = [j for j in range(buyback_j) if trade_allowed(buyback_eur, export_eur[j], spread)]
        slots.sort(key=lambda j: (-export_eur[j], j))
        if 0 not in slots[:n_slots]:
            return None, "waiting to sell at a higher price"
        when = _clock(forecasts.times[buyback_j], self.home.timezone)
        reason = (f"selling: {sell_now:.2f} EUR/kWh now, buy back at {buyback_eur:.2f} at {when} "
                  f"beats the spread of {spread:.2f}")
        if power_kw < battery.max_discharge_kw - MIN_POWER_KW and keeper is not None:
            reason += f"; limited to keep the {self._deadline_words(keeper)} reachable"
        return Decision(Mode.EXPORT, power_kw, reason), ""

    def energy_to_keep_kwh(
        self, state: State, forecasts: Forecasts, book: EnergyBook | None = None
    ) -> tuple[float, Deadline | None]:
        """Least energy (kWh) at the end of this interval that keeps every deadline reachable, and the deadline
        that sets it (None when it is the reserve).

        For a deadline ending interval ``k``: its target minus what full-power charging in intervals ``1..k``
        can still store (the target itself when it falls due at the end of this interval).
        """
        if book is None:
            book = EnergyBook.from_forecasts(self.home, forecasts, state.dt_h)
        capacity_kwh = self.home.battery.capacity_kwh
        keep_kwh, keeper = self.home.battery.reserve_kwh, None
        for k, deadline in forecasts.deadline_steps(state.minutes):
            target_kwh = min(max(deadline.soc_pct, 0.0) / 100.0 * capacity_kwh, capacity_kwh)
            needed_kwh = target_kwh - sum(book.import_kwh[1:k + 1])
            if needed_kwh > keep_kwh + TOL_KWH:
                keep_kwh, keeper = needed_kwh, deadline
        return keep_kwh, keeper

    # ------------------------------------------------------------------------------------------------
    # Rule 4 and helpers
    # ------------------------------------------------------------------------------------------------

    def _self_consumption(self, book: EnergyBook, note: str) -> Decision:
        if book.msc_kwh[0] > 0:
            reason = "self-consumption: PV surplus charges the battery"
        elif book.msc_kwh[0] < 0:
            reason = "self-consumption: the battery covers the house"
        else:
            reason = "self-consumption"
        return Decision(Mode.MSC, 0.0, f"{reason} ({note})" if note else reason)

    def _import(self, book: EnergyBook, energy_kwh: float, reason: str) -> Decision | None:
        """Import at full power this interval (the grid connection and the room left in the battery allowed)."""
        room_kw = float(self.home.battery.max_charge_kw_now(energy_kwh, book.dt_h))
        power_kw = min(book.charge_kw[0], room_kw)
        if power_kw < MIN_POWER_KW:
            return None  # full, or the connection has no room: nothing to import
        return Decision(Mode.IMPORT, power_kw, reason)

    def _deadline_words(self, deadline: Deadline) -> str:
        return f"{_clock(deadline.time, self.home.timezone)} {_KIND_LABEL.get(deadline.kind, deadline.kind)}"

    @staticmethod
    def _known_prices(forecasts: Forecasts) -> tuple[list[float], list[float], int]:
        """Import and export prices known now, cut at the first missing one (K can be 0)."""
        imp = np.asarray(forecasts.import_price_eur_per_kwh, dtype=float)
        exp = np.asarray(forecasts.export_price_eur_per_kwh, dtype=float)
        n = min(len(imp), len(exp), forecasts.horizon)
        finite = np.isfinite(imp[:n]) & np.isfinite(exp[:n])
        if not finite.all():
            n = int(np.argmin(finite))
        return imp[:n].tolist(), exp[:n].tolist(), n


def _rank_by_price(candidates: Iterable[int], price_eur: list[float], n_known: int) -> list[int]:
    """Known-price intervals cheapest first (ties: earlier first), then unknown-price ones in time order."""
    cands = list(candidates)
    known = sorted((j for j in cands if j < n_known), key=lambda j: (price_eur[j], j))
    return known + sorted(j for j in cands if j >= n_known)


def _clock(time: pd.Timestamp, tz: str) -> str:
    """Local clock time "HH:MM" of a UTC instant."""
    return pd.Timestamp(time).tz_convert(tz).strftime("%H:%M")


def _count(n: int, minutes: int) -> str:
    """"4 quarters", "1 hour", "3 intervals"."""
    unit = {15: "quarter", 60: "hour"}.get(minutes, "interval")
    return f"{n} {unit}" + ("" if n == 1 else "s")
