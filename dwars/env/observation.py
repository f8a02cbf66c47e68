"""The observation a policy sees: a versioned, fixed-length float32 vector built from State and Forecasts.

The layout is a contract between the simulator (training), the exported ONNX model and the Pi runtime;
``OBS_VERSION`` changes whenever it changes. One vectorised core (:func:`features`) builds it, for one
interval (runtime, evaluation) or for a whole episode at once (training).

Version 4 (``N_OBS`` = 226; version 3 had the same columns, but its plan decision was the plain MPC's, not
repaired for the safety shield; version 2 had 214, without the plan columns 34-45; version 1 206, also without
26-33):

=======  ===================================  ===========================================================
index    name                                 meaning (unit, scaling)
=======  ===================================  ===========================================================
0        soc                                  energy / capacity (0..1)
1        reserve                              reserve / capacity
2        capacity                             capacity_kwh / 20
3        max_charge                           max_charge_kw / 10
4        max_discharge                        max_discharge_kw / 10
5        round_trip_efficiency                0..1
6        dt_h                                 interval length in hours (0.25 or 1)
7-8      hour_sin, hour_cos                   local clock time of the interval start
9-10     doy_sin, doy_cos                     local day of the year
11-12    weekday_sin, weekday_cos             local weekday
13       spread                               profile-scaled spread, EUR/kWh
14       exports_for_trading                  1, or 0 for inkoop-only
15       wear                                 wear cost, EUR/kWh discharged
16-17    import_now, export_now               prices of this interval, EUR/kWh
18       endpoint_enabled                     1 when an endpoint falls within the horizon
19       endpoint_hours                       hours until it / 24 (1.5 when none)
20       endpoint_need                        target soc - soc (energy still needed, / capacity)
21-23    night_end_enabled, _hours, _need     the same for the night end
24       grid_limit                           grid_limit_kw / 20
25       pv_kwp                               installed PV / 10 (0 when only measured)
26       import_rank_24h                      share of the known intervals of the next 24 h cheaper than now
27       cheaper_h_endpoint                   hours of known intervals before the endpoint cheaper than now / 10
28       cheaper_h_night_end                  the same before the night end
29       import_above_min_24h                 import now - cheapest known import of the next 24 h, EUR/kWh
30       import_below_max_24h                 dearest known import of the next 24 h - import now, EUR/kWh
31       export_rank_24h                      share of the known intervals of the next 24 h paying more export
32       export_over_buy_back_24h             export now - cheapest known import of the next 24 h, EUR/kWh
33       pv_surplus_24h                       forecast PV surplus (PV - load > 0) of the next 24 h, kWh / 10
34-37    plan_msc, _hold, _import, _export    the MPC's decision for this interval, one-hot
38       plan_battery                         the plan's battery power this interval / max power (charge +)
39       plan_fraction                        the decision's power / max power of its direction (0..1)
40       plan_curtail                         1 where the plan curtails PV this interval
41-45    plan_soc_1h, _3h, _6h, _12h, _24h    planned soc (0..1) after 1, 3, 6, 12 and 24 hours
46-81    import_h0..35                        mean import price of each coming hour, EUR/kWh
82-117   export_h0..35                        mean export price of each coming hour, EUR/kWh
118-153  known_h0..35                         share of that hour whose price is known (0..1)
154-189  pv_h0..35                            PV forecast of each coming hour, kW / 10
190-225  load_h0..35                          load forecast of each coming hour, kW / 10
=======  ===================================  ===========================================================

Why 26-33 (version 2): a battery earns by charging in the cheapest hours before it needs the energy and
discharging in the dearest; an MLP finds rankings among 36 hourly prices hard to learn from a year of data.
The rule controller and the MPC rank prices explicitly; these columns give the policy the same view.

Why 34-45 (version 3): the policy refines a plan rather than replacing it. The receding-horizon LP of
:mod:`dwars.policy.mpc` solves, on the same forecasts, what an MLP learns only roughly from 36 hourly prices
(which hours are cheapest before which goal, how much energy each needs); the policy sees its decision and
planned SoC path and learns, from the perfect-foresight oracle and then from the reward, where to follow it and
where forecast errors and the shield make another action pay. These columns depend on the SoC, so they are
filled per interval by :func:`with_plan` (:func:`features` leaves them 0), from :func:`plan_features`.
Version 4: the decision columns (34-39) are the shield-aware MPC's
(:class:`~dwars.policy.lookahead.ShieldAwareMpcController`): where the shield would refuse the plan's step, the
allowed action the plan values most. The plan's battery power and SoC path (40-45) stay the LP's own.

Unknown prices (day-ahead not yet published) are filled with the mean of the known ones and flagged by
``known_h*``. "Hour j" is the j-th block of 60 minutes starting at the interval being decided.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dwars.env.modes import Mode
from dwars.policy.base import Forecasts, Home, State

OBS_VERSION = 4
HOURS_AHEAD = 36
PLAN_SOC_HOURS = (1, 3, 6, 12, 24)
NO_DEADLINE_HOURS = 1.5  # value of *_hours (in days) when no deadline of that kind is in the horizon
_STATIC = [
    "soc", "reserve", "capacity", "max_charge", "max_discharge", "round_trip_efficiency", "dt_h",
    "hour_sin", "hour_cos", "doy_sin", "doy_cos", "weekday_sin", "weekday_cos", "spread", "exports_for_trading",
    "wear", "import_now", "export_now", "endpoint_enabled", "endpoint_hours", "endpoint_need",
    "night_end_enabled", "night_end_hours", "night_end_need", "grid_limit", "pv_kwp",
    "import_rank_24h", "cheaper_h_endpoint", "cheaper_h_night_end", "import_above_min_24h", "import_below_max_24h",
    "export_rank_24h", "export_over_buy_back_24h", "pv_surplus_24h",
    "plan_msc", "plan_hold", "plan_import", "plan_export", "plan_battery", "plan_fraction", "plan_curtail",
    *(f"plan_soc_{h}h" for h in PLAN_SOC_HOURS),
]
OBSERVATION_NAMES: tuple[str, ...] = (
    *_STATIC,
    *(f"{block}_h{j}" for block in ("import", "export", "known", "pv", "load") for j in range(HOURS_AHEAD)),
)
N_OBS = len(OBSERVATION_NAMES)
I_SOC = 0
I_ENDPOINT_NEED = OBSERVATION_NAMES.index("endpoint_need")
I_NIGHT_END_NEED = OBSERVATION_NAMES.index("night_end_need")
I_PLAN = OBSERVATION_NAMES.index("plan_msc")
N_PLAN = len(PLAN_SOC_HOURS) + 7


def home_features(home: Home, minutes: int) -> np.ndarray:
    """The features that describe the installation (indices 1-6, 13-15, 24-25)."""
    b, inst = home.battery, home.installation
    out = np.zeros(N_OBS, dtype=np.float32)
    out[1] = b.reserve_kwh / b.capacity_kwh
    out[2] = b.capacity_kwh / 20.0
    out[3] = b.max_charge_kw / 10.0
    out[4] = b.max_discharge_kw / 10.0
    out[5] = b.efficiency_one_way**2
    out[6] = minutes / 60.0
    out[13] = home.spread_eur_per_kwh
    out[14] = 1.0 if home.exports_for_trading else 0.0
    out[15] = b.wear_eur_per_kwh
    out[24] = home.grid_limit_kw / 20.0
    out[25] = (inst.pv.kwp / 10.0) if inst.pv is not None else 0.0
    return out


def _hourly_blocks(values: np.ndarray, per_hour: int, known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each hour block of ``values`` (B, H) and the share of known entries (B, HOURS_AHEAD)."""
    rows = values.shape[0]
    width = HOURS_AHEAD * per_hour
    padded = np.zeros((rows, width))
    mask = np.zeros((rows, width))
    n = min(values.shape[1], width)
    padded[:, :n] = values[:, :n]
    mask[:, :n] = 1.0 if known is None else known[:, :n]
    padded = padded.reshape(rows, HOURS_AHEAD, per_hour)
    mask = mask.reshape(rows, HOURS_AHEAD, per_hour)
    count = mask.sum(axis=2)
    mean = np.divide((padded * mask).sum(axis=2), count, out=np.zeros((rows, HOURS_AHEAD)), where=count > 0)
    return mean, count / per_hour


def features(
    base: np.ndarray,
    times_local: pd.DatetimeIndex | pd.Timestamp,
    import_price: np.ndarray,
    export_price: np.ndarray,
    price_known: np.ndarray,
    pv_kw: np.ndarray,
    load_kw: np.ndarray,
    minutes: int,
    endpoint: tuple[np.ndarray, np.ndarray] | None,
    night_end: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """The vectorised core: observations for B intervals at once, WITHOUT the SoC-dependent entries.

    Parameters
    ----------
    base : output of :func:`home_features` (N_OBS,).
    times_local : the B interval starts on the local clock (or one Timestamp: B = 1).
    import_price, export_price : (B, H) prices from each interval on, EUR/kWh (anything where unknown).
    price_known : (B, H) 1 where the price is known at that interval, else 0.
    pv_kw, load_kw : (B, H) forecasts, kW.
    minutes : interval length.
    endpoint, night_end : (hours until the next deadline, target soc 0..1) per interval, or None if off.

    Returns
    -------
    (B, N_OBS) float32. Column ``soc`` holds 0 and the ``*_need`` columns hold the TARGET soc: call
    :func:`with_soc` to complete them for the actual energy.
    """
    if isinstance(times_local, pd.Timestamp):  # one interval (runtime): skip pandas' index machinery
        hour = np.array([times_local.hour + times_local.minute / 60.0])
        doy, weekday = np.array([times_local.day_of_year - 1]), np.array([times_local.day_of_week])
    else:
        hour = times_local.hour.to_numpy() + times_local.minute.to_numpy() / 60.0
        doy = times_local.day_of_year.to_numpy() - 1
        weekday = times_local.day_of_week.to_numpy()
    rows = len(hour)
    out = np.repeat(base[None, :], rows, axis=0)
    two_pi = 2.0 * np.pi
    out[:, 7], out[:, 8] = np.sin(two_pi * hour / 24), np.cos(two_pi * hour / 24)
    out[:, 9], out[:, 10] = np.sin(two_pi * doy / 365.25), np.cos(two_pi * doy / 365.25)
    out[:, 11], out[:, 12] = np.sin(two_pi * weekday / 7), np.cos(two_pi * weekday / 7)
    out[:, 16], out[:, 17] = import_price[:, 0], export_price[:, 0]
    for first, deadline in ((18, endpoint), (21, night_end)):
        if deadline is None:
            out[:, first:first + 3] = (0.0, NO_DEADLINE_HOURS, 0.0)
            continue
        hours, target = deadline
        present = np.isfinite(hours)
        out[:, first] = present
        out[:, first + 1] = np.where(present, hours / 24.0, NO_DEADLINE_HOURS)
        out[:, first + 2] = np.where(present, target, 0.0)
    per_hour = 60 // minutes
    known = price_known.astype(float)
    n_known = known.sum(axis=1, keepdims=True)
    fill = np.divide((import_price * known).sum(axis=1, keepdims=True), n_known,
                     out=np.zeros((rows, 1)), where=n_known > 0)
    fill_export = np.divide((export_price * known).sum(axis=1, keepdims=True), n_known,
                            out=np.zeros((rows, 1)), where=n_known > 0)
    imp = np.where(known > 0, import_price, fill)
    exp = np.where(known > 0, export_price, fill_export)
    _price_structure(out, import_price, export_price, known, pv_kw, load_kw, minutes, endpoint, night_end)
    start = len(_STATIC)
    out[:, start:start + HOURS_AHEAD] = _hourly_blocks(imp, per_hour)[0]
    out[:, start + HOURS_AHEAD:start + 2 * HOURS_AHEAD] = _hourly_blocks(exp, per_hour)[0]
    out[:, start + 2 * HOURS_AHEAD:start + 3 * HOURS_AHEAD] = _hourly_blocks(known, per_hour)[0]
    out[:, start + 3 * HOURS_AHEAD:start + 4 * HOURS_AHEAD] = _hourly_blocks(pv_kw, per_hour)[0] / 10.0
    out[:, start + 4 * HOURS_AHEAD:start + 5 * HOURS_AHEAD] = _hourly_blocks(load_kw, per_hour)[0] / 10.0
    return out.astype(np.float32)


def _price_structure(out: np.ndarray, import_price: np.ndarray, export_price: np.ndarray, known: np.ndarray,
                     pv_kw: np.ndarray, load_kw: np.ndarray, minutes: int,
                     endpoint: tuple[np.ndarray, np.ndarray] | None,
                     night_end: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Columns 26-33 (see the module table), in place, for B rows at once."""
    width = import_price.shape[1]
    dt_h = minutes / 60.0
    day = min(width, round(24 / dt_h))
    imp, exp, ok = import_price[:, :day], export_price[:, :day], known[:, :day] > 0
    n_ok = np.maximum(ok.sum(axis=1), 1)
    now_imp, now_exp = import_price[:, :1], export_price[:, :1]
    cheaper = ok & (imp < now_imp - 1e-9)
    out[:, 26] = cheaper.sum(axis=1) / n_ok
    columns = np.arange(width)[None, :]
    for col, deadline in ((27, endpoint), (28, night_end)):
        if deadline is None:
            out[:, col] = 0.0
            continue
        steps = np.where(np.isfinite(deadline[0]), np.nan_to_num(deadline[0]) / dt_h, 0.0)[:, None]
        before = (columns < steps) & (known > 0) & (import_price < now_imp - 1e-9)
        out[:, col] = before.sum(axis=1) * dt_h / 10.0
    lo = np.where(ok, imp, np.inf).min(axis=1)
    hi = np.where(ok, imp, -np.inf).max(axis=1)
    any_ok = ok.any(axis=1)
    out[:, 29] = np.where(any_ok, now_imp[:, 0] - lo, 0.0)
    out[:, 30] = np.where(any_ok, hi - now_imp[:, 0], 0.0)
    out[:, 31] = (ok & (exp > now_exp + 1e-9)).sum(axis=1) / n_ok
    out[:, 32] = np.where(any_ok, now_exp[:, 0] - lo, 0.0)
    out[:, 33] = np.clip(pv_kw[:, :day] - load_kw[:, :day], 0.0, None).sum(axis=1) * dt_h / 10.0


def with_soc(obs: np.ndarray, soc: float | np.ndarray) -> np.ndarray:
    """Fill in the SoC-dependent entries of observations from :func:`features` (in place; returns obs)."""
    obs[..., I_SOC] = soc
    for need, enabled in ((I_ENDPOINT_NEED, I_ENDPOINT_NEED - 2), (I_NIGHT_END_NEED, I_NIGHT_END_NEED - 2)):
        obs[..., need] = np.where(obs[..., enabled] > 0, obs[..., need] - soc, 0.0)
    return obs


def plan_features(mode: int, power_kw: float, curtail: bool, battery_kw: float, energy_path_kwh: np.ndarray | None,
                  energy_kwh: float, home: Home, minutes: int) -> np.ndarray:
    """The plan columns 34-45 (N_PLAN,) from the MPC's decision and plan.

    Parameters
    ----------
    mode, power_kw, curtail : the MPC's decision for this interval (:class:`~dwars.env.modes.Mode`, kW).
    battery_kw : the plan's battery power this interval (charge positive), kW.
    energy_path_kwh : planned energy at the END of each interval, kWh; None when there is no plan (then the SoC
        path stays at the current energy).
    energy_kwh : the battery's energy now, kWh.
    """
    b = home.battery
    out = np.zeros(N_PLAN, dtype=np.float32)
    out[int(mode)] = 1.0  # one-hot in the order of Mode: MSC, HOLD, IMPORT, EXPORT
    out[4] = battery_kw / (b.max_charge_kw if battery_kw >= 0 else b.max_discharge_kw)
    limit = b.max_charge_kw if mode == Mode.IMPORT else b.max_discharge_kw
    out[5] = power_kw / limit if mode in (Mode.IMPORT, Mode.EXPORT) else 0.0
    out[6] = 1.0 if curtail else 0.0
    path = np.asarray([energy_kwh] if energy_path_kwh is None or not len(energy_path_kwh) else energy_path_kwh)
    steps = np.minimum(np.asarray(PLAN_SOC_HOURS) * 60 // minutes, len(path)) - 1
    out[7:] = path[steps] / b.capacity_kwh
    return out


def with_plan(obs: np.ndarray, plan: np.ndarray) -> np.ndarray:
    """Fill in the plan columns (from :func:`plan_features`) of an observation (in place; returns obs)."""
    obs[..., I_PLAN:I_PLAN + N_PLAN] = plan
    return obs


def next_deadline(forecasts: Forecasts, kind: str, minutes: int) -> tuple[float, float] | None:
    """(hours until the end of the interval it applies to, target soc 0..1) of the first deadline of a kind."""
    for k, d in forecasts.deadline_steps(minutes):
        if d.kind == kind:
            return (k + 1) * minutes / 60.0, d.soc_pct / 100.0
    return None


def build_observation(state: State, forecasts: Forecasts, home: Home, plan: np.ndarray | None = None) -> np.ndarray:
    """The observation (N_OBS,) for one interval, as the runtime and the ONNX controller use it.

    ``plan``: the plan columns (:func:`plan_features`; :class:`dwars.policy.advisor.PlanAdvisor` computes them);
    None leaves them 0."""
    minutes = state.minutes
    # Full width always: beyond the forecasts (end of data) prices count as unknown and PV/load as 0 kW,
    # exactly as in the precomputed training rows.
    width = max(HOURS_AHEAD * 60 // minutes, forecasts.horizon)
    h = forecasts.horizon
    k = forecasts.n_price_known
    imp, exp, known, pv, load = (np.zeros((1, width)) for _ in range(5))
    imp[0, :k] = forecasts.import_price_eur_per_kwh
    exp[0, :k] = forecasts.export_price_eur_per_kwh
    known[0, :k] = 1.0
    pv[0, :h] = np.nan_to_num(forecasts.pv_kw)
    load[0, :h] = np.nan_to_num(forecasts.load_kw)
    goals = []
    for kind, enabled in (("endpoint", home.installation.goals.endpoint_hour is not None),
                          ("night_end", home.installation.goals.night_end_soc_pct is not None)):
        found = next_deadline(forecasts, kind, minutes) if enabled else None
        goals.append(None if found is None else (np.array([found[0]]), np.array([found[1]])))
    local = pd.Timestamp(state.time).tz_convert(home.timezone)
    obs = features(home_features(home, minutes), local, imp, exp, known, pv, load, minutes, goals[0], goals[1])[0]
    if plan is not None:
        with_plan(obs, plan)
    return with_soc(obs, state.energy_kwh / home.battery.capacity_kwh)
