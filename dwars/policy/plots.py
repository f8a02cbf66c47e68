"""Plots of an evaluation: one day of prices, PV, load, SoC and modes per controller; costs per month."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dwars.env.modes import Mode
from dwars.errors import DwarsError
from dwars.policy.evaluate import Evaluation

MODE_COLOURS = {Mode.MSC: "#4caf50", Mode.HOLD: "#9e9e9e", Mode.IMPORT: "#2196f3", Mode.EXPORT: "#ff9800"}


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DwarsError("plots need matplotlib: pip install 'dwars[plot]'") from None
    return plt


def busiest_day(evaluation: Evaluation) -> str:
    """The local day with the widest price range (where controllers differ most), as YYYY-MM-DD."""
    tz = evaluation.installation.site.timezone
    local = evaluation.scenario.index.tz_convert(tz)
    prices = pd.Series(evaluation.import_price, index=local)
    days = prices.groupby(local.date)
    spread = days.max() - days.min()
    full = days.size() >= days.size().max() * 0.9  # whole days only
    return str(spread[full].idxmax())


def plot_day(evaluation: Evaluation, day: str, path: Path) -> Path:
    """Prices, PV and load, SoC and modes of every controller on one local day; returns the PNG path."""
    plt = _pyplot()
    tz = evaluation.installation.site.timezone
    local = evaluation.scenario.index.tz_convert(tz)
    sel = np.asarray(local.strftime("%Y-%m-%d") == day)
    if not sel.any():
        raise DwarsError(f"plot day {day}: not in the scenario ({local[0]:%Y-%m-%d} .. {local[-1]:%Y-%m-%d})")
    x = local[sel]
    names = list(evaluation.traces)
    fig, axes = plt.subplots(3 + len(names), 1, figsize=(11, 7 + 0.55 * len(names)), sharex=True,
                             gridspec_kw={"height_ratios": [2, 2, 2.5] + [0.45] * len(names)})
    ax_price, ax_power, ax_soc = axes[:3]
    ax_price.step(x, evaluation.import_price[sel], where="post", label="import")
    ax_price.step(x, evaluation.export_price[sel], where="post", label="export")
    ax_price.set_ylabel("EUR/kWh")
    ax_price.legend(loc="upper right", fontsize=8)
    ax_price.set_title(f"{evaluation.installation.name}: {day} ({tz})")
    ax_power.fill_between(x, evaluation.pv_kw[sel], step="post", alpha=0.4, color="#fbc02d", label="PV")
    ax_power.step(x, evaluation.scenario.frame["load_kw"].to_numpy()[sel], where="post", color="k", label="load")
    ax_power.set_ylabel("kW")
    ax_power.legend(loc="upper right", fontsize=8)
    capacity = evaluation.installation.battery.capacity_kwh
    for name in names:
        trace = evaluation.traces[name]
        ax_soc.step(x, 100 * trace.energy_kwh[sel] / capacity, where="post", label=name)
    ax_soc.axhline(evaluation.installation.battery.reserve_pct, color="r", ls=":", lw=1, label="reserve")
    ax_soc.set_ylabel("SoC % (end)")
    ax_soc.set_ylim(0, 100)
    ax_soc.legend(loc="upper right", fontsize=8, ncol=3)
    step = pd.Timedelta(minutes=evaluation.scenario.minutes)
    for ax, name in zip(axes[3:], names, strict=True):
        modes = evaluation.traces[name].mode[sel]
        for t, m in zip(x, modes, strict=True):
            ax.axvspan(t, t + step, color=MODE_COLOURS[Mode(int(m))], lw=0)
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in MODE_COLOURS.values()]
    axes[-1].legend(handles, [m.label for m in MODE_COLOURS], loc="upper center", bbox_to_anchor=(0.5, -0.6),
                    ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_monthly(evaluation: Evaluation, path: Path) -> Path:
    """Energy cost plus wear per local month for every controller; returns the PNG path."""
    plt = _pyplot()
    tz = evaluation.installation.site.timezone
    month = evaluation.scenario.index.tz_convert(tz).strftime("%Y-%m")
    table = pd.DataFrame({name: t.energy_cost_eur + t.wear_eur for name, t in evaluation.traces.items()})
    monthly = table.groupby(np.asarray(month)).sum()
    fig, ax = plt.subplots(figsize=(11, 4.5))
    monthly.plot.bar(ax=ax, width=0.8)
    ax.set_ylabel("EUR (energy + wear)")
    ax.set_xlabel("")
    ax.set_title(f"{evaluation.installation.name}: cost per month")
    ax.axhline(0, color="k", lw=0.8)
    ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
