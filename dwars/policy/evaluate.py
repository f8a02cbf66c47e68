"""The measuring stick: run controllers over a scenario through the one simulator core and score them.

Every figure follows the evaluation contract (README, "Evaluation"): per interval the controller decides
from the state and the forecasts, :func:`dwars.env.dispatch.simulate_interval` plays the decision out on the
actual PV, load and prices, and the results are summed into

- ``energy_cost_eur`` = sum of dt * (import_price * import - export_price * export)
- ``wear_eur`` = sum of dt * wear_eur_per_kwh * discharge
- ``final_energy_value_eur`` = v * (e_T - e_0), v = mean import price of the scenario's last 24 h
- ``objective_eur`` = energy_cost + wear - final_energy_value

Violations: a reserve violation is an interval that ends below the reserve; an endpoint or night-end
violation is a deadline missed although it was reachable at the start of its local day (charging at the
highest power the battery and the connection allow from then on).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.dispatch import simulate_interval, terminal_value_eur_per_kwh
from dwars.env.goals import Deadline, deadlines
from dwars.env.modes import Mode
from dwars.policy.base import Controller, Home, State

ENERGY_TOL_KWH = 1e-6  # a deadline counts as met within this much energy (float rounding)
METRIC_KEYS = (
    "objective_eur", "energy_cost_eur", "wear_eur", "final_energy_value_eur", "import_kwh", "export_kwh",
    "curtailed_kwh", "equivalent_full_cycles", "shield_interventions", "violations", "steps",
)


@dataclass
class Trace:
    """What one controller did, interval by interval (arrays of length T; energy at the END of each interval)."""

    controller: str
    times: pd.DatetimeIndex
    minutes: int
    energy0_kwh: float
    mode: np.ndarray
    power_kw: np.ndarray
    energy_kwh: np.ndarray
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    import_kw: np.ndarray
    export_kw: np.ndarray
    curtailed_kw: np.ndarray
    energy_cost_eur: np.ndarray
    wear_eur: np.ndarray
    reasons: list[str]
    interventions: list[Any] = field(default_factory=list)
    shielded: np.ndarray | None = None  # per interval: the shield intervened
    proposed: list[Any] | None = None  # per interval: the controller's own Decision (when shielded)
    flex: Any | None = None  # a dwars.env.flex.FlexTrace when the home has an EV, a boiler or a peak limit
    wall_s: float = 0.0

    @property
    def dt_h(self) -> float:
        return self.minutes / 60.0

    def energy_at_starts(self) -> np.ndarray:
        """Energy at the START of each interval."""
        return np.concatenate([[self.energy0_kwh], self.energy_kwh[:-1]])


def _empty(n: int) -> np.ndarray:
    return np.zeros(n, dtype=float)


def run_controller(
    controller: Controller,
    scenario: Scenario,
    home: Home,
    forecaster: Any,
    pv_kw: np.ndarray,
    import_price: np.ndarray,
    export_price: np.ndarray,
    shield: Any | None = None,
    progress: Callable[[int], None] | None = None,
    decision_log: Any | None = None,
    flex: Any | None = None,
) -> Trace:
    """Step ``controller`` through ``scenario`` and return its trace.

    Parameters
    ----------
    controller : decides each interval from State and Forecasts.
    scenario : the actuals (prices, load; PV given separately as ``pv_kw``).
    home : battery, tariff and installation.
    forecaster : object with ``at(i) -> Forecasts`` (see :mod:`dwars.env.forecast`).
    pv_kw : actual PV per interval (modelled or measured).
    import_price, export_price : EUR/kWh per interval.
    shield : optional object with ``check(state, forecasts, decision) -> result`` whose ``applied`` decision
        replaces the proposal and whose ``interventions`` are recorded.
    progress : called with the number of intervals done, now and then.
    decision_log : a :class:`dwars.policy.decision_log.DecisionLog` that gets one record per interval.
    flex : a :class:`dwars.env.flex.HomeFlex` (EV, boiler, connection limits) that plays each interval instead of
        the plain battery simulation; its trace is ``trace.flex``.
    """
    if decision_log is not None:
        from dwars.policy.decision_log import decision_record, inputs_digest
    n = len(scenario.frame)
    dt = scenario.dt_h
    load = scenario.frame["load_kw"].to_numpy()
    battery = home.battery
    grid = home.grid_limit_kw
    capacity = battery.capacity_kwh
    e = home.installation.battery.initial_energy_kwh
    trace = Trace(controller.name, scenario.index, scenario.minutes, e, np.zeros(n, np.int8), _empty(n), _empty(n),
                  _empty(n), _empty(n), _empty(n), _empty(n), _empty(n), _empty(n), _empty(n), [""] * n)
    if shield is not None:
        trace.shielded = np.zeros(n, dtype=bool)
        trace.proposed = [None] * n
    controller.reset()
    if flex is not None and not flex.active:
        flex = None
    if flex is not None:
        flex.reset()
    t0 = time.perf_counter()
    times = scenario.index
    for i in range(n):
        state = State(times[i], scenario.minutes, e, 100.0 * e / capacity,
                      float(pv_kw[i - 1]) if i else float("nan"), float(load[i - 1]) if i else float("nan"))
        forecasts = forecaster.at(i)
        decision = controller.decide(state, forecasts)
        proposed, notes = decision, ()
        if shield is not None:
            result = shield.check(state, forecasts, decision)
            trace.proposed[i] = decision
            decision, notes = result.applied, result.interventions
            trace.shielded[i] = bool(notes)
            trace.interventions.extend(notes)
        if flex is not None:
            # High-voltage mode's decision goes through the shield too, as on the Pi.
            check = (lambda d, s=state, f=forecasts: shield.check(s, f, d)) if shield is not None else None
            r = flex.play(i, forecasts, decision, e, float(pv_kw[i]), float(load[i]), float(import_price[i]),
                          float(export_price[i]), check=check)
            if flex.interventions and trace.shielded is not None:
                notes = (*notes, *flex.interventions)
                trace.shielded[i] = True
                trace.interventions.extend(flex.interventions)
            if flex.hv_decision is not None:  # what the battery did: the log's "applied", as on the Pi
                decision = flex.hv_decision
        else:
            r = simulate_interval(e, int(decision.mode), decision.power_kw, pv_kw[i], load[i], import_price[i],
                                  export_price[i], dt, battery, grid, decision.curtail_pv)
        if decision_log is not None:
            decision_log.write(decision_record(times[i], home.timezone, controller.name, state.soc_pct, proposed,
                                               decision, list(notes), inputs_digest(state, forecasts),
                                               flex.interval_loads(i) if flex is not None else None))
        e = float(r.energy_kwh)
        trace.mode[i] = int(decision.mode)
        trace.power_kw[i] = decision.power_kw
        trace.energy_kwh[i] = e
        trace.charge_kw[i] = r.charge_kw
        trace.discharge_kw[i] = r.discharge_kw
        trace.import_kw[i] = r.import_kw
        trace.export_kw[i] = r.export_kw
        trace.curtailed_kw[i] = r.curtailed_kw
        trace.energy_cost_eur[i] = r.energy_cost_eur
        trace.wear_eur[i] = r.wear_eur
        trace.reasons[i] = decision.reason
        if progress is not None and (i % 512 == 0 or i == n - 1):
            progress(i + 1)
    trace.wall_s = time.perf_counter() - t0
    if flex is not None:
        trace.flex = flex.trace
    return trace


def reachable_max_energy(
    energy_start_kwh: float, pv_kw: np.ndarray, load_kw: np.ndarray, home: Home, dt_h: float
) -> np.ndarray:
    """Highest energy reachable at the end of each interval when charging as hard as physics allows."""
    b = home.battery
    headroom = np.maximum(np.minimum(b.max_charge_kw, home.grid_limit_kw + pv_kw - load_kw), 0.0)
    gained = np.cumsum(b.efficiency_one_way * headroom * dt_h)
    return np.minimum(energy_start_kwh + gained, b.capacity_kwh)


def count_violations(trace: Trace, scenario: Scenario, home: Home, pv_kw: np.ndarray,
                     goals: Sequence[Deadline]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Reserve, endpoint and night-end violations (see the module text), with a record for each."""
    b = home.battery
    load = scenario.frame["load_kw"].to_numpy()
    starts = trace.energy_at_starts()
    counts = {"reserve": int(np.sum(trace.energy_kwh < b.reserve_kwh - ENERGY_TOL_KWH)), "endpoint": 0,
              "night_end": 0}
    details: list[dict[str, Any]] = []
    step = pd.Timedelta(minutes=scenario.minutes)
    tz = home.timezone
    index = scenario.index
    for d in goals:
        k = int((d.time - index[0]) / step) - 1  # interval that ends at the deadline
        if k < 0 or k >= len(index):
            continue
        target = b.capacity_kwh * d.soc_pct / 100.0
        if trace.energy_kwh[k] >= target - ENERGY_TOL_KWH:
            continue
        day_start = d.time.tz_convert(tz).normalize().tz_convert("UTC")
        j = max(int(np.ceil((day_start - index[0]) / step)), 0)
        best = reachable_max_energy(starts[j], pv_kw[j:k + 1], load[j:k + 1], home, scenario.dt_h)[-1]
        reachable = best >= target - ENERGY_TOL_KWH
        details.append({"kind": d.kind, "time": d.time.isoformat(), "target_kwh": target,
                        "energy_kwh": float(trace.energy_kwh[k]), "reachable": bool(reachable)})
        if reachable:
            counts[d.kind] += 1
    return counts, details


def score(trace: Trace, scenario: Scenario, home: Home, pv_kw: np.ndarray, import_price: np.ndarray,
          goals: Sequence[Deadline]) -> dict[str, Any]:
    """The contract's figures for one trace."""
    dt = trace.dt_h
    v = terminal_value_eur_per_kwh(scenario.index, scenario.minutes, import_price)
    energy_cost = float(trace.energy_cost_eur.sum())
    wear = float(trace.wear_eur.sum())
    final_value = v * (float(trace.energy_kwh[-1]) - trace.energy0_kwh)
    violations, details = count_violations(trace, scenario, home, pv_kw, goals)
    capacity = home.battery.capacity_kwh
    peak = home.installation.site.import_peak_kw
    flex = trace.flex.summary(dt) if trace.flex is not None else {}
    return {
        "objective_eur": energy_cost + wear - final_value,
        "energy_cost_eur": energy_cost,
        "wear_eur": wear,
        "final_energy_value_eur": final_value,
        "import_kwh": float(trace.import_kw.sum() * dt),
        "export_kwh": float(trace.export_kw.sum() * dt),
        "curtailed_kwh": float(trace.curtailed_kw.sum() * dt),
        "equivalent_full_cycles": float(trace.discharge_kw.sum() * dt / capacity) if capacity > 0 else 0.0,
        "shield_interventions": int(trace.shielded.sum()) if trace.shielded is not None else 0,
        "shield_rate": float(trace.shielded.mean()) if trace.shielded is not None else 0.0,
        "shield_by_rule": _rule_counts(trace.interventions),
        "violations": violations,
        "steps": len(trace.mode),
        "missed_deadlines": details,
        "wall_s": trace.wall_s,
        "mode_share": {m.label: float(np.mean(trace.mode == int(m))) for m in Mode},
        "peak_import_kw": float(trace.import_kw.max()) if len(trace.import_kw) else 0.0,
        "intervals_over_peak": int(np.sum(trace.import_kw > peak + 1e-6)) if peak is not None else 0,
        **flex,
    }


def _rule_counts(interventions: Sequence[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in interventions:
        counts[item.rule] = counts.get(item.rule, 0) + 1
    return counts


@dataclass
class Evaluation:
    """Result of :func:`evaluate`: figures per controller and the traces behind them."""

    installation: Installation
    scenario: Scenario
    results: dict[str, dict[str, Any]]
    traces: dict[str, Trace]
    pv_kw: np.ndarray
    import_price: np.ndarray
    export_price: np.ndarray
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "dwars_evaluation": 1,
            "installation": self.installation.name,
            "scenario": {
                "start": self.scenario.start.isoformat(),
                "end": self.scenario.end.isoformat(),
                "minutes": self.scenario.minutes,
                "intervals": len(self.scenario.frame),
            },
            "seed": self.seed,
            "controllers": self.results,
        }


def evaluate(
    inst: Installation,
    scenario: Scenario,
    controllers: Sequence[str],
    seed: int = 0,
    forecast_options: dict[str, Any] | None = None,
    policy_path: str | None = None,
    progress_factory: Callable[[str, int], Callable[[int], None]] | None = None,
    shield: bool = True,
    decision_log: Any | None = None,
    flex: bool = True,
    ev_strategy: str | None = None,
    divert: bool = True,
    voltage_mode: bool = True,
) -> Evaluation:
    """Run each named controller over ``scenario`` for ``inst`` and score it.

    Controllers other than ``oracle`` see the forecasts of :class:`dwars.env.forecast.Forecaster` (seeded by
    ``seed``); ``oracle`` plans on the actuals. With ``shield`` (default) every controller but ``oracle``
    (the physical limit) and ``none`` (no battery) runs through :class:`dwars.policy.shield.Shield`.
    ``decision_log`` (a :class:`~dwars.policy.decision_log.DecisionLog`) receives every decision.
    With ``flex`` (default) the home's EV, boiler and peak limit are simulated (:mod:`dwars.env.flex`);
    ``ev_strategy`` overrides the config's EV strategy and ``divert=False`` leaves the boiler to its thermostat.
    With a ``[voltage]`` section the grid voltage is simulated too: the street's from the scenario's
    ``grid_voltage_v`` column, or modelled on the PV; ``voltage_mode=False`` never switches high-voltage mode on
    (the inverter still trips: what the mode saves is the difference).
    """
    from dwars.env.flex import HomeFlex
    from dwars.env.forecast import Forecaster
    from dwars.policy.registry import make_controller
    from dwars.policy.shield import Shield

    home = Home.from_installation(inst)
    pv = scenario.pv_kw(inst).to_numpy()
    epex = scenario.frame["price_eur_per_mwh"].to_numpy()
    import_price = home.tariff.import_price(epex, scenario.index)
    export_price = home.tariff.export_price(epex, scenario.index)
    goals = deadlines(inst, scenario.start, scenario.end, scenario.minutes)
    forecaster = Forecaster(scenario, home, seed=seed, **(forecast_options or {}))
    street_v = scenario.frame["grid_voltage_v"].to_numpy() if "grid_voltage_v" in scenario.frame.columns else None
    results: dict[str, dict[str, Any]] = {}
    traces: dict[str, Trace] = {}
    for name in controllers:
        controller = make_controller(name, home, scenario, seed=seed, pv_kw=pv, policy_path=policy_path)
        progress = progress_factory(name, len(scenario.frame)) if progress_factory else None
        guard = Shield(home) if shield and name not in ("oracle", "none") else None
        loads = HomeFlex(home, scenario.index, scenario.minutes, divert, ev_strategy, voltage_mode=voltage_mode,
                         street_v=street_v, pv_kw=pv, has_battery=name != "none") if flex else None
        trace = run_controller(controller, scenario, home, forecaster, pv, import_price, export_price,
                               shield=guard, progress=progress, decision_log=decision_log, flex=loads)
        traces[name] = trace
        # `none` keeps the battery idle (HOLD): it is the home without a battery, so its goals do not apply.
        results[name] = score(trace, scenario, home, pv, import_price, [] if name == "none" else goals)
    return Evaluation(inst, scenario, results, traces, pv, import_price, export_price, seed)
