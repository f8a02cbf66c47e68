"""The dispatch LP: the cheapest battery schedule for known PV, load and prices (one builder for the oracle and MPC).

Variables per interval ``t`` (kW means over the interval, ``dt`` hours): ``charge``, ``discharge``, ``import``,
``export``, ``pv_used`` and ``e`` (battery energy at the END of the interval, kWh), plus one slack (kWh) per
deadline. The constraints are the evaluation contract of :mod:`dwars.env.dispatch`:

- ``import - export = load - pv_used + charge - discharge``; ``0 <= pv_used <= pv``
- ``e_t = e_{t-1} + eta * charge * dt - discharge * dt / eta``; ``reserve <= e_t <= capacity``; ``e_{-1} = e0``
- ``0 <= charge <= max_charge``, ``0 <= discharge <= max_discharge``, ``0 <= import, export <= grid_limit``
- deadline ``j`` at interval ``k``: ``e_k + slack_j >= min_energy_j``, ``slack_j >= 0``
- minimise ``energy_cost + wear - v * (e_T - e0) + penalty * sum(slack)`` with
  ``energy_cost = sum dt * (import_price * import - export_price * export)`` and
  ``wear = sum dt * wear_eur_per_kwh * discharge``.

Bounds that mirror the simulator (they never cut off a schedule the simulator can carry out): charging is at most
``grid_limit + pv - load`` (what the connection can supply) and discharging at most ``grid_limit + load``; import
may exceed the limit only where the house alone needs more (``load - pv > grid_limit``), as the simulator reports
it. When ``e0`` lies outside ``[reserve, capacity]`` the bound on that side is widened to ``e0``.

Keeping the plan physical (what the simulator can do)
-----------------------------------------------------
The LP is a relaxation of what the simulator allows: it may charge and discharge in one interval (burning energy
in the conversion losses), import and export at once, or curtail PV while importing. The simulator does none of
these: the battery goes one way, PV serves the house and the battery first. Where are these tricks worth money?

- Discharging while charging only raises the house's draw from the grid. With ``import_price >= 0`` the same
  energy change without it is never dearer (less import, or more curtailment, which is free, or more export
  where that pays) and saves wear, so an optimum never needs it.
- Curtailing PV while importing pays only when ``import_price < 0``; importing and exporting at once only when
  ``export_price > import_price``.

So the tricks can pay only in "trick-prone" intervals: ``import_price < 0`` or ``export_price > import_price``
(never with Dutch tariffs except at deeply negative EPEX prices: 28 quarters of 2024). A small cost epsilon does
not stop them (the gain is real money there). Instead, when the horizon has trick-prone intervals, the LP is
solved twice:

1. the plain contract LP; its value is a valid LOWER BOUND on every schedule the simulator can carry out
   (``Schedule.lower_bound_eur``);
2. in each trick-prone interval the schedule of pass 1 is made physical while keeping its energy change (one
   direction of the battery, PV first), and the interval is fixed to that branch by bounds only: either
   deficit (``pv_used = pv``, ``export = 0``, and the battery direction of pass 1: ``charge`` or ``discharge``
   upper bound 0) or surplus (``import = 0``; both directions stay open: burning energy there would only cut
   export or PV, so the optimum does not, and the battery may discharge into the house while PV is curtailed,
   which the simulator allows). Pass 1's physical version is feasible for pass 2, which is then re-solved
   hot-started. Within the branch every LP point is what the simulator does (with ``curtail_pv`` where PV is
   not exported).

   The branch choice is a heuristic. Against the exact MILP (binary battery and grid direction in each
   trick-prone interval) on 2024 for examples/home.toml (15-min data, and the same averaged to hourly): at
   60 min 35.8683 vs 35.8645 EUR, at 15 min 36.7349 vs 36.7307 EUR (+0.01 %; the MILP takes 8 s and 370 s,
   the two passes 0.4 s and 3 s); the plain LP bound is 1.2-1.3 EUR lower. The tests compare with a MILP with
   binaries in EVERY interval on real windows with negative prices (within 0.3 %) and on random problems
   (equal wherever no interval is trick-prone, which checks the argument above).

Outside trick-prone intervals the optimum is physical except for exact ties (e.g. a price of exactly 0, or no
wear cost). Finally the plan is read the simulator's way: powers below ``POWER_TOL_KW`` are 0, a tie that
charges and discharges at once keeps its energy change in one direction, the energy follows the battery
equation and the grid flows come from the simulator's own :func:`dwars.env.battery.site_flows` with the plan's
curtailment; this changes nothing but ties (``Schedule.n_cleaned``). The reported objective is computed from
these arrays, so it is what a replay through :func:`dwars.env.dispatch.simulate_interval` yields (the tests
check this to ~1e-12 EUR), and the MILP comparison in the tests checks that nothing was lost.

Solver: HiGHS through ``highspy``, model passed column-wise (CSC arrays built with numpy, no Python loop over
intervals), one thread, no output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dwars.env.battery import Battery, site_flows

#: Default price of a missed deadline, EUR per kWh short. High enough that a reachable deadline is always met
#: (no kWh is worth that much), low enough to keep the LP well scaled.
SLACK_PENALTY_EUR_PER_KWH = 10.0
#: Powers below this (kW) count as zero when reading a schedule.
POWER_TOL_KW = 1e-7

#: HiGHS options for every solve. Measured on the one-year 15-minute LP (211 548 columns, 71 004 rows): dual
#: simplex with Dantzig pricing and without presolve is ~15 % faster than HiGHS's defaults (2.7-2.8 s vs
#: 3.2-3.4 s; IPM 8.9 s, PDLP far slower); scipy's linprog(method="highs-ds") on the same LP takes 3.7 s.
HIGHS_OPTIONS: dict[str, Any] = {
    "output_flag": False,
    "log_to_console": False,
    "threads": 1,
    "solver": "simplex",
    "presolve": "off",
    "simplex_dual_edge_weight_strategy": 0,
}

# Column blocks of the LP, in this order, each of length T (then the J slacks).
_BLOCKS = ("charge", "discharge", "import", "export", "pv_used", "energy")


class LpError(RuntimeError):
    """HiGHS did not return an optimal schedule (time limit, numerical trouble)."""


@dataclass(frozen=True)
class Schedule:
    """An optimal (physically realisable) dispatch schedule and what it costs.

    Arrays have one value per interval; powers are kW means, ``energy_kwh`` is the battery energy at the END of
    each interval. Money in EUR over the whole horizon. ``curtail_pv`` is the flag the simulator must be given
    (the plan curtails PV it does not curtail by itself at the export limit).

    Attributes
    ----------
    energy_cost_eur : ``sum dt * (import_price * import - export_price * export)``.
    wear_eur : ``sum dt * wear_eur_per_kwh * discharge``.
    final_energy_value_eur : ``v * (e_T - e0)``.
    objective_eur : ``energy_cost + wear - final_energy_value`` (the evaluation contract; no slack penalty).
    slack_kwh : per deadline (in the order given), kWh by which the plan misses it (0 when met).
    slack_penalty_eur : ``penalty * sum(slack_kwh)``.
    lp_objective_eur : the solver's objective of the final pass (``objective + slack_penalty`` up to clean-up).
    lower_bound_eur : pass 1's LP value (incl. slack penalty): no simulator-feasible schedule does better.
    status : HiGHS model status of the final pass (``Optimal``).
    passes : 1, or 2 when trick-prone intervals had to be fixed to a branch (see the module text).
    n_cleaned : intervals re-expressed by the final clean-up (exact ties only).
    """

    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    import_kw: np.ndarray
    export_kw: np.ndarray
    pv_used_kw: np.ndarray
    energy_kwh: np.ndarray
    pv_kw: np.ndarray
    curtail_pv: np.ndarray
    deadline_steps: np.ndarray
    slack_kwh: np.ndarray
    energy0_kwh: float
    energy_cost_eur: float
    wear_eur: float
    final_energy_value_eur: float
    slack_penalty_eur: float
    objective_eur: float
    lp_objective_eur: float
    lower_bound_eur: float
    status: str
    solve_s: float
    build_s: float
    passes: int
    n_cleaned: int
    n_vars: int
    n_rows: int
    n_nonzeros: int
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.charge_kw)

    @property
    def battery_kw(self) -> np.ndarray:
        """Net AC battery power, charge positive."""
        return self.charge_kw - self.discharge_kw

    @property
    def curtailed_kw(self) -> np.ndarray:
        return np.maximum(self.pv_kw - self.pv_used_kw, 0.0)

    @property
    def total_slack_kwh(self) -> float:
        return float(self.slack_kwh.sum())

    @property
    def short_deadlines(self) -> list[tuple[int, int, float]]:
        """``(deadline index, interval k, kWh short)`` of every deadline that needed slack (> 1e-6 kWh)."""
        return [(j, int(self.deadline_steps[j]), float(s)) for j, s in enumerate(self.slack_kwh) if s > 1e-6]

    def summary(self) -> dict[str, Any]:
        """Scalar figures (JSON-friendly)."""
        return {
            "intervals": len(self),
            "energy_cost_eur": self.energy_cost_eur,
            "wear_eur": self.wear_eur,
            "final_energy_value_eur": self.final_energy_value_eur,
            "objective_eur": self.objective_eur,
            "slack_penalty_eur": self.slack_penalty_eur,
            "total_slack_kwh": self.total_slack_kwh,
            "lp_objective_eur": self.lp_objective_eur,
            "lower_bound_eur": self.lower_bound_eur,
            "status": self.status,
            "passes": self.passes,
            "n_cleaned": self.n_cleaned,
            "solve_s": self.solve_s,
            "build_s": self.build_s,
            "n_vars": self.n_vars,
            "n_rows": self.n_rows,
            "n_nonzeros": self.n_nonzeros,
        }


@dataclass(frozen=True)
class DispatchLp:
    """The LP in HiGHS's column-wise form (``minimise cost @ x + offset`` s.t. ``row_lo <= A x <= row_hi``)."""

    n_intervals: int
    n_deadlines: int
    pv_kw: np.ndarray
    load_kw: np.ndarray
    import_price: np.ndarray
    export_price: np.ndarray
    cost: np.ndarray
    offset: float
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    a_start: np.ndarray
    a_index: np.ndarray
    a_value: np.ndarray

    @property
    def n_cols(self) -> int:
        return len(self.cost)

    @property
    def n_rows(self) -> int:
        return len(self.row_lower)

    def col(self, block: str) -> slice:
        """Column slice of a block (``charge`` ... ``energy``, or ``slack``)."""
        t = self.n_intervals
        if block == "slack":
            return slice(6 * t, 6 * t + self.n_deadlines)
        i = _BLOCKS.index(block)
        return slice(i * t, (i + 1) * t)

    def to_scipy(self) -> Any:
        """The constraint matrix as a ``scipy.sparse.csc_matrix`` (for inspection and tests)."""
        from scipy.sparse import csc_matrix

        return csc_matrix((self.a_value, self.a_index, self.a_start), shape=(self.n_rows, self.n_cols))


def _as_array(x: Any, n: int, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"{name}: length {a.shape} does not match pv_kw ({n})")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def build_lp(
    energy0_kwh: float,
    pv_kw: np.ndarray,
    load_kw: np.ndarray,
    import_price: np.ndarray,
    export_price: np.ndarray,
    dt_h: float,
    battery: Battery,
    grid_limit_kw: float,
    deadlines: list[tuple[int, float]],
    terminal_value_eur_per_kwh: float,
    slack_penalty_eur_per_kwh: float = SLACK_PENALTY_EUR_PER_KWH,
) -> DispatchLp:
    """Build the dispatch LP (see the module text); arrays are validated and must have equal length.

    ``deadlines`` are ``(k, min_energy_kwh)``: the energy at the end of interval ``k`` must reach the minimum.
    """
    pv = np.maximum(np.asarray(pv_kw, dtype=float), 0.0)
    t_n = len(pv)
    if t_n == 0:
        raise ValueError("solve_dispatch: no intervals")
    load = _as_array(load_kw, t_n, "load_kw")
    pi = _as_array(import_price, t_n, "import_price")
    pe = _as_array(export_price, t_n, "export_price")
    if not np.isfinite(pv).all():
        raise ValueError("pv_kw: contains NaN or infinite values")
    dk = np.array([int(k) for k, _ in deadlines], dtype=np.int64)
    dmin = np.array([float(m) for _, m in deadlines], dtype=float)
    if len(dk) and (dk.min() < 0 or dk.max() >= t_n):
        raise ValueError(f"deadlines: interval index outside 0..{t_n - 1}: {dk.tolist()}")
    j_n = len(dk)
    eta = battery.efficiency_one_way
    dt = float(dt_h)
    e0 = float(energy0_kwh)
    grid = float(grid_limit_kw)

    # ---- columns: cost and bounds, block by block
    zeros, ones = np.zeros(t_n), np.ones(t_n)
    cost = np.concatenate([
        zeros,                                   # charge
        np.full(t_n, dt * battery.wear_eur_per_kwh),  # discharge
        dt * pi,                                 # import
        -dt * pe,                                # export
        zeros,                                   # pv_used
        zeros,                                   # energy
        np.full(j_n, float(slack_penalty_eur_per_kwh)),
    ])
    cost[6 * t_n - 1] -= terminal_value_eur_per_kwh  # -v * e_T
    offset = terminal_value_eur_per_kwh * e0
    e_lo = min(battery.reserve_kwh, e0)
    e_hi = max(battery.capacity_kwh, e0)
    col_lower = np.concatenate([np.zeros(5 * t_n), np.full(t_n, e_lo), np.zeros(j_n)])
    col_upper = np.concatenate([
        np.minimum(battery.max_charge_kw, np.maximum(grid + pv - load, 0.0)),
        np.minimum(battery.max_discharge_kw, np.maximum(grid + load, 0.0)) * ones,
        np.maximum(grid, load - pv),
        np.full(t_n, grid),
        pv,
        np.full(t_n, e_hi),
        np.full(j_n, np.inf),
    ])

    # ---- rows: balance (T, equality), energy dynamics (T, equality), deadlines (J, >=)
    row_lower = np.concatenate([load, np.zeros(t_n), dmin])
    row_lower[t_n] = e0
    row_upper = np.concatenate([load, np.zeros(t_n), np.full(j_n, np.inf)])
    row_upper[t_n] = e0

    # ---- matrix, column-wise. Entries are generated in column order (rows ascending within a column).
    t = np.arange(t_n)
    bal, dyn = t, t_n + t
    # charge: -1 in balance, -eta*dt in dynamics; discharge: +1, +dt/eta
    # import: +1, export: -1, pv_used: +1 (balance only)
    # energy e_t: +1 in dyn t, -1 in dyn t+1, +1 in each deadline row with k = t
    order = np.argsort(dk, kind="stable")
    dl_rows = (2 * t_n + order).astype(np.int64)
    dl_cols_t = dk[order]
    e_count = 1 + (t < t_n - 1) + np.bincount(dk, minlength=t_n)
    counts = np.concatenate([np.full(t_n, 2), np.full(t_n, 2), ones, ones, ones, e_count, np.ones(j_n)]).astype(
        np.int64)
    a_start = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=a_start[1:])
    nnz = int(a_start[-1])
    a_index = np.empty(nnz, dtype=np.int64)
    a_value = np.empty(nnz, dtype=float)

    def put2(block: int, rows0: np.ndarray, vals0: Any, rows1: np.ndarray, vals1: Any) -> None:
        s = a_start[block * t_n:(block + 1) * t_n]
        a_index[s], a_value[s] = rows0, vals0
        a_index[s + 1], a_value[s + 1] = rows1, vals1

    def put1(block: int, rows0: np.ndarray, vals0: float) -> None:
        s = a_start[block * t_n:(block + 1) * t_n]
        a_index[s], a_value[s] = rows0, vals0

    put2(0, bal, -1.0, dyn, -eta * dt)
    put2(1, bal, 1.0, dyn, dt / eta)
    put1(2, bal, 1.0)
    put1(3, bal, -1.0)
    put1(4, bal, 1.0)
    s = a_start[5 * t_n:6 * t_n]
    a_index[s], a_value[s] = dyn, 1.0
    nxt = s[:-1] + 1
    a_index[nxt], a_value[nxt] = dyn[1:], -1.0
    if j_n:
        # Deadline entries follow the dynamics entries of their energy column, one after another.
        base = s[dl_cols_t] + 1 + (dl_cols_t < t_n - 1)
        first = np.searchsorted(dl_cols_t, dl_cols_t, side="left")
        pos = base + (np.arange(j_n) - first)
        a_index[pos], a_value[pos] = dl_rows, 1.0
        ss = a_start[6 * t_n:6 * t_n + j_n]
        a_index[ss], a_value[ss] = 2 * t_n + np.arange(j_n), 1.0
    return DispatchLp(t_n, j_n, pv, load, pi, pe, cost, offset, col_lower, col_upper, row_lower, row_upper,
                      a_start, a_index, a_value)


def _new_highs(time_limit_s: float | None) -> Any:
    import highspy  # deferred: only the optimisers need it

    h = highspy.Highs()
    for key, value in HIGHS_OPTIONS.items():
        h.setOptionValue(key, value)
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    return h


def _pass_model(h: Any, lp: DispatchLp) -> None:
    import highspy

    status = h.passModel(
        lp.n_cols, lp.n_rows, len(lp.a_value), int(highspy.MatrixFormat.kColwise), int(highspy.ObjSense.kMinimize),
        lp.offset, lp.cost, lp.col_lower, lp.col_upper, lp.row_lower, lp.row_upper,
        lp.a_start.astype(np.int32), lp.a_index.astype(np.int32), lp.a_value, np.zeros(lp.n_cols, dtype=np.int32),
    )
    if status == highspy.HighsStatus.kError:
        raise LpError("HiGHS refused the dispatch LP")


def _run(h: Any) -> tuple[np.ndarray, float, str]:
    import highspy

    h.run()
    status = h.getModelStatus()
    text = h.modelStatusToString(status)
    if status != highspy.HighsModelStatus.kOptimal:
        raise LpError(f"HiGHS: {text} (dispatch LP with {h.getNumCol()} columns)")
    x = np.asarray(h.getSolution().col_value, dtype=float)
    return x, float(h.getInfo().objective_function_value), text


def _split(lp: DispatchLp, x: np.ndarray) -> dict[str, np.ndarray]:
    return {b: x[lp.col(b)].copy() for b in (*_BLOCKS, "slack")}


def _physical(delta_e: np.ndarray, eta: float, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """One-direction charge/discharge with the same energy change."""
    charge = np.maximum(delta_e, 0.0) / (eta * dt)
    discharge = np.maximum(-delta_e, 0.0) * eta / dt
    return charge, discharge


def _energy_within(charge: np.ndarray, discharge: np.ndarray, e0: float, lo: float, hi: float, eta: float,
                   dt: float) -> np.ndarray:
    """Energy path of the battery equation; charge/discharge trimmed (in place) by the solver's tolerance
    (~1e-7 kWh) where the path would leave ``[lo, hi]``, as the simulator would clip them."""
    energy = e0 + np.cumsum(eta * charge * dt - discharge * dt / eta)
    over = np.maximum.accumulate(np.maximum(energy - hi, 0.0))
    if over[-1] > 0.0:
        charge -= np.minimum(np.diff(over, prepend=0.0) / (eta * dt), charge)
        energy = e0 + np.cumsum(eta * charge * dt - discharge * dt / eta)
    under = np.maximum.accumulate(np.maximum(lo - energy, 0.0))
    if under[-1] > 0.0:
        discharge -= np.minimum(np.diff(under, prepend=0.0) * eta / dt, discharge)
        energy = e0 + np.cumsum(eta * charge * dt - discharge * dt / eta)
    return energy


def _second_pass(h: Any, lp: DispatchLp, x: np.ndarray, prone: np.ndarray, eta: float, dt: float,
                 first: tuple[float, str]) -> tuple[np.ndarray, float, str, int]:
    """Fix each trick-prone interval to the branch of pass 1's physical version (bounds only) and re-solve.

    Returns the solution, its LP objective, status and the number of passes. Should HiGHS fail (it should not:
    pass 1's physical version is feasible), pass 1's solution is kept and read the simulator's way.
    """
    v = _split(lp, x)
    pv, load = lp.pv_kw[prone], lp.load_kw[prone]
    delta = eta * v["charge"][prone] * dt - v["discharge"][prone] * dt / eta
    ch, dis = _physical(delta, eta, dt)
    deficit = load + ch - dis - pv >= 0.0  # grid draw with all PV used
    lo, hi = lp.col_lower.copy(), lp.col_upper.copy()
    lo[lp.col("pv_used").start + prone[deficit]] = pv[deficit]
    hi[lp.col("export").start + prone[deficit]] = 0.0
    hi[lp.col("import").start + prone[~deficit]] = 0.0
    # Deficit intervals also get a battery direction (burning energy would raise a paid import); surplus
    # intervals keep both directions open (burning there only cuts export or PV, never worth the wear).
    charging = deficit & (delta >= 0.0)
    hi[lp.col("discharge").start + prone[charging]] = 0.0
    hi[lp.col("charge").start + prone[deficit & ~charging]] = 0.0
    changed = np.flatnonzero((lo != lp.col_lower) | (hi != lp.col_upper)).astype(np.int32)
    if not len(changed):
        return x, first[0], first[1], 1
    h.changeColsBounds(len(changed), changed, lo[changed], hi[changed])
    try:
        x2, obj, status = _run(h)
    except LpError:
        return x, first[0], first[1], 1
    return x2, obj, status, 2


def solve_dispatch(
    energy0_kwh: float,
    pv_kw: np.ndarray,
    load_kw: np.ndarray,
    import_price: np.ndarray,
    export_price: np.ndarray,
    dt_h: float,
    battery: Battery,
    grid_limit_kw: float,
    deadlines: list[tuple[int, float]],
    terminal_value_eur_per_kwh: float,
    *,
    time_limit_s: float | None = None,
    slack_penalty_eur_per_kwh: float = SLACK_PENALTY_EUR_PER_KWH,
) -> Schedule:
    """The cheapest physically realisable schedule (see the module text).

    Parameters
    ----------
    energy0_kwh : battery energy at the start of the first interval.
    pv_kw, load_kw : mean PV and household power per interval (length T).
    import_price, export_price : EUR/kWh per interval (see :mod:`dwars.env.tariff`).
    dt_h : interval length in hours.
    battery : limits, efficiency, reserve and wear.
    grid_limit_kw : connection limit, both directions.
    deadlines : ``(k, min_energy_kwh)``: energy at the end of interval ``k`` at least this (soft: slack penalised
        at ``slack_penalty_eur_per_kwh``, so the LP stays feasible when a deadline cannot be reached).
    terminal_value_eur_per_kwh : value ``v`` of energy left at the end, ``- v * (e_T - e0)`` in the objective.
    time_limit_s : HiGHS time limit per pass (``LpError`` when reached).

    Raises
    ------
    LpError
        when HiGHS returns no optimal solution.
    ValueError
        on inconsistent or non-finite inputs.
    """
    t0 = time.perf_counter()
    lp = build_lp(energy0_kwh, pv_kw, load_kw, import_price, export_price, dt_h, battery, grid_limit_kw, deadlines,
                  terminal_value_eur_per_kwh, slack_penalty_eur_per_kwh)
    pv, load, pi, pe = lp.pv_kw, lp.load_kw, lp.import_price, lp.export_price
    eta, dt = battery.efficiency_one_way, float(dt_h)
    h = _new_highs(time_limit_s)
    _pass_model(h, lp)
    build_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    x, lp_obj, status = _run(h)
    lower_bound = lp_obj
    passes = 1
    prone = np.flatnonzero((pi < 0.0) | (pe > pi))
    if len(prone):
        x, lp_obj, status, passes = _second_pass(h, lp, x, prone, eta, dt, (lp_obj, status))
    solve_s = time.perf_counter() - t1


    v = _split(lp, x)
    charge = np.clip(v["charge"], 0.0, lp.col_upper[lp.col("charge")])
    discharge = np.clip(v["discharge"], 0.0, lp.col_upper[lp.col("discharge")])
    imp = np.maximum(v["import"], 0.0)
    exp = np.maximum(v["export"], 0.0)
    pv_used = np.clip(v["pv_used"], 0.0, pv)

    # Read the plan the simulator's way (see the module text): powers below POWER_TOL_KW are 0 (the decision
    # is HOLD there), an interval that charges and discharges at once (exact ties only) keeps its energy change
    # in one direction, the energy follows the battery equation, and the grid flows are those of the
    # simulator's own site balance for the plan's curtailment. Only ties change (n_cleaned counts them).
    tol = POWER_TOL_KW
    charge[charge <= tol] = 0.0
    discharge[discharge <= tol] = 0.0
    both = (charge > 0.0) & (discharge > 0.0)
    if both.any():
        delta = eta * charge[both] * dt - discharge[both] * dt / eta
        charge[both], discharge[both] = _physical(delta, eta, dt)
    energy = _energy_within(charge, discharge, float(energy0_kwh), lp.col_lower[lp.col("energy")][0],
                            lp.col_upper[lp.col("energy")][0], eta, dt)
    curtail = (pv - pv_used > 1e-6) & (exp < grid_limit_kw - 1e-6)
    curtail[both] = pe[both] < 0.0
    flows = site_flows(load, pv, charge, discharge, grid_limit_kw, curtail)
    curtail &= flows.curtailed_kw > 0.0
    changed = both | (np.abs(flows.import_kw - imp) > 1e-7) | (np.abs(flows.export_kw - exp) > 1e-7)
    imp, exp, pv_used = flows.import_kw, flows.export_kw, flows.pv_used_kw
    n_cleaned = int(changed.sum())
    steps = np.array([k for k, _ in deadlines], dtype=np.int64)
    short = np.array([m for _, m in deadlines], dtype=float) - energy[steps]
    slack = np.where(short > 1e-9, short, 0.0)

    energy_cost = float(dt * (pi @ imp - pe @ exp))
    wear = float(dt * battery.wear_eur_per_kwh * discharge.sum())
    final_value = float(terminal_value_eur_per_kwh * (energy[-1] - float(energy0_kwh)))
    penalty = float(slack_penalty_eur_per_kwh * slack.sum())
    return Schedule(
        charge_kw=charge, discharge_kw=discharge, import_kw=imp, export_kw=exp, pv_used_kw=pv_used,
        energy_kwh=energy, pv_kw=pv, curtail_pv=curtail, deadline_steps=steps,
        slack_kwh=slack, energy0_kwh=float(energy0_kwh),
        energy_cost_eur=energy_cost, wear_eur=wear, final_energy_value_eur=final_value, slack_penalty_eur=penalty,
        objective_eur=energy_cost + wear - final_value, lp_objective_eur=lp_obj, lower_bound_eur=lower_bound,
        status=status, solve_s=solve_s, build_s=build_s, passes=passes, n_cleaned=n_cleaned,
        n_vars=lp.n_cols, n_rows=lp.n_rows, n_nonzeros=len(lp.a_value),
        info={"trick_prone_intervals": len(prone)},
    )
