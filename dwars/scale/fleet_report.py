"""The tables, summary and plots of a fleet run (:mod:`dwars.scale.fleet`): savings against the baseline, capture
of the oracle's saving and violations, per row, per home and per controller."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the driver imports this module
    from dwars.scale.fleet import FleetRun

CAPTURE_MIN_SAVING_EUR = 0.01  # capture is left empty where the oracle saves less than a cent
FIGURES: tuple[str, ...] = (
    "objective_eur", "energy_cost_eur", "wear_eur", "final_energy_value_eur", "import_kwh", "export_kwh",
    "curtailed_kwh", "equivalent_full_cycles", "shield_interventions",
)
VIOLATION_KINDS: tuple[str, ...] = ("reserve", "endpoint", "night_end")


# --------------------------------------------------------------------------------------------------
# Aggregation.
# --------------------------------------------------------------------------------------------------


def _capture(saving: pd.Series, oracle_saving: pd.Series) -> pd.Series:
    """saving / oracle saving where the oracle saves at least a cent, else NaN (see the module text)."""
    return (saving / oracle_saving).where(oracle_saving >= CAPTURE_MIN_SAVING_EUR)


def fleet_table(run: FleetRun) -> pd.DataFrame:
    """One row per home x scenario x controller: the figures, ``saving_eur`` against the baseline, the oracle's
    saving and ``capture`` (NaN without an oracle), and the files that re-run the row."""
    fleet = run.fleet
    files = {h.name: f"homes/{h.file_name}" for h in fleet.homes}
    rows = []
    for task in run.tasks:
        for controller, r in (task.results or {}).items():
            row: dict[str, Any] = {"home": task.home, "scenario": task.scenario, "controller": controller}
            row.update({k: r[k] for k in FIGURES})
            row["violations"] = sum(r["violations"].values())
            row.update({f"violations_{k}": r["violations"][k] for k in VIOLATION_KINDS})
            row["config"] = files[task.home]
            row["scenario_file"] = run.scenario_files[task.home, task.scenario]
            rows.append(row)
    columns = ["home", "scenario", "controller", *FIGURES, "violations", *(f"violations_{k}" for k in VIOLATION_KINDS),
               "saving_eur", "oracle_saving_eur", "capture", "config", "scenario_file"]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows)
    keys = ["home", "scenario"]
    objective = df.set_index([*keys, "controller"])["objective_eur"]
    base = objective.xs(fleet.baseline, level="controller").rename("baseline")
    df = df.join(base, on=keys)
    df["saving_eur"] = df["baseline"] - df["objective_eur"]
    if "oracle" in fleet.controllers:
        df = df.join(objective.xs("oracle", level="controller").rename("oracle"), on=keys)
        df["oracle_saving_eur"] = df["baseline"] - df["oracle"]
    else:
        df["oracle_saving_eur"] = np.nan
    df["capture"] = _capture(df["saving_eur"], df["oracle_saving_eur"])
    order = {name: i for i, name in enumerate(fleet.controllers)}
    homes = {h.name: i for i, h in enumerate(fleet.homes)}
    scenarios = {s.name: i for i, s in enumerate(fleet.scenarios)}
    df = df.sort_values(["home", "scenario", "controller"],
                        key=lambda c: c.map({"home": homes, "scenario": scenarios, "controller": order}[c.name]))
    return df[columns].reset_index(drop=True)


def homes_table(run: FleetRun, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per home x controller, summed over the scenarios the home finished (``scenarios`` counts them),
    with capture of the sums and the home's main figures (PV kWp, battery kWh and kW, annual load, profile)."""
    sums = ["objective_eur", "energy_cost_eur", "wear_eur", "import_kwh", "export_kwh", "equivalent_full_cycles",
            "shield_interventions", "violations", *(f"violations_{k}" for k in VIOLATION_KINDS), "saving_eur",
            "oracle_saving_eur"]
    columns = ["home", "controller", "scenarios", *sums, "capture", "origin", "config", "pv_kwp", "battery_kwh",
               "battery_kw", "annual_load_kwh", "profile", "supplier"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    grouped = rows.groupby(["home", "controller"], sort=False)
    df = grouped[sums].sum(min_count=1).join(grouped.size().rename("scenarios")).reset_index()
    df["capture"] = _capture(df["saving_eur"], df["oracle_saving_eur"])
    info = pd.DataFrame([{
        "home": h.name, "origin": h.origin, "config": f"homes/{h.file_name}",
        "pv_kwp": h.installation.pv.kwp if h.installation.pv is not None else 0.0,
        "battery_kwh": h.installation.battery.capacity_kwh,
        "battery_kw": max(h.installation.battery.max_charge_kw, h.installation.battery.max_discharge_kw),
        "annual_load_kwh": h.installation.load.annual_kwh, "profile": h.installation.strategy.profile,
        "supplier": h.installation.tariff.supplier,
    } for h in run.fleet.homes])
    return df.merge(info, on="home", how="left")[columns]


def distribution(values: pd.Series) -> dict[str, float | None]:
    v = values.dropna().to_numpy(dtype=float)
    if not len(v):
        return {k: None for k in ("mean", "p10", "p50", "p90", "min", "max")}
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {"mean": float(v.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90),
            "min": float(v.min()), "max": float(v.max())}


def summary(run: FleetRun, rows: pd.DataFrame, homes: pd.DataFrame) -> dict[str, Any]:
    """Per controller, over the homes (each summed over its scenarios): the savings distribution, capture, cost,
    violations and shield interventions; and per scenario the mean saving and capture over the homes."""
    out: dict[str, Any] = {}
    for controller in run.fleet.controllers:
        h = homes[homes["controller"] == controller]
        r = rows[rows["controller"] == controller]
        capture = h["capture"].dropna()
        out[controller] = {
            "homes": len(h),
            "objective_eur": distribution(h["objective_eur"]),
            "saving_eur": distribution(h["saving_eur"]),
            "capture_mean": float(capture.mean()) if len(capture) else None,
            "capture_median": float(capture.median()) if len(capture) else None,
            "homes_with_capture": len(capture),
            "violations": int(h["violations"].sum()),
            "violations_by_kind": {k: int(h[f"violations_{k}"].sum()) for k in VIOLATION_KINDS},
            "homes_with_violations": int((h["violations"] > 0).sum()),
            "shield_interventions": int(h["shield_interventions"].sum()),
            "by_scenario": {
                s: {"homes": len(g), "saving_eur_mean": float(g["saving_eur"].mean()),
                    "capture_mean": float(g["capture"].mean()) if g["capture"].notna().any() else None}
                for s, g in r.groupby("scenario", sort=False)
            },
        }
    return out


# --------------------------------------------------------------------------------------------------
# Outputs.
# --------------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """NaN and infinities as null (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def plot_fleet(rows: pd.DataFrame, homes: pd.DataFrame, controllers: Sequence[str], baseline: str,
               folder: str | Path) -> list[Path]:
    """``savings.png`` (per controller: each home's saving over all scenarios, box and points) and ``capture.png``
    (the same for capture, when there is an oracle); returns the paths written."""
    from dwars.policy.plots import _pyplot

    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [c for c in controllers if c != baseline]
    paths = []
    for column, title, unit, file in (
            ("saving_eur", f"saving against {baseline} per home (all scenarios)", "EUR", "savings.png"),
            ("capture", "capture per home: saving / oracle saving", "share of the oracle's saving", "capture.png")):
        shown = [c for c in names if homes.loc[homes["controller"] == c, column].notna().any()]
        if not shown:
            continue
        data = [homes.loc[homes["controller"] == c, column].dropna().to_numpy() for c in shown]
        fig, ax = plt.subplots(figsize=(1.6 * len(shown) + 3, 4.5))
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(shown) + 1), shown)
        rng = np.random.default_rng(0)  # the points' sideways jitter only
        for k, values in enumerate(data, start=1):
            ax.scatter(k + rng.uniform(-0.15, 0.15, len(values)), values, s=12, alpha=0.6, zorder=3)
        ax.axhline(1.0 if column == "capture" else 0.0, color="k", lw=0.8, ls=":")
        ax.set_ylabel(unit)
        ax.set_title(f"{title}, {homes['home'].nunique()} homes")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(folder / file, dpi=110)
        plt.close(fig)
        paths.append(folder / file)
    return paths
