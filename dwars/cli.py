"""The ``dwars`` command: one entry point with sub-commands for the home owner and the developer."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dwars import __version__
from dwars.errors import DwarsError

UNITS = """\
Units and conventions:
  power kW (mean over an interval), energy kWh, prices EUR/MWh (EPEX, as published) or EUR/kWh
  (what you pay, incl. VAT), state of charge % of usable capacity. Times are stored in UTC (interval
  start) and shown on the home's clock (Europe/Amsterdam). Intervals are 15 or 60 minutes.
  File arguments may name a bundled real sample as sample:NAME (e.g. sample:prices_2024.json.gz)."""

# Piped output (logs, CI, make run in a pipe) gets a wide fixed width instead of rich's 80 columns, so the
# tables stay readable rather than folding every cell.
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True)


def _path(value: str) -> Path:
    """A file argument; ``sample:NAME`` points into the samples bundled with dwars."""
    if value.startswith("sample:"):
        from dwars.data.io import sample_path

        return sample_path(value.removeprefix("sample:"))
    return Path(value)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


# ---------------------------------------------------------------------------------------------- config


def cmd_config_check(args: argparse.Namespace) -> int:
    import pandas as pd

    from dwars.config import load_config
    from dwars.env.tariff import PROFILE_SPREAD_FACTOR, Tariff, exports_for_trading

    inst = load_config(_path(args.config))
    tariff = Tariff.from_config(inst.tariff, inst.site.timezone, source=str(args.config))
    b, g, s = inst.battery, inst.goals, inst.site
    table = Table(title=f"{inst.name}: installation (valid)", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("site", f"{s.latitude:.3f} N, {s.longitude:.3f} E, {s.timezone}, grid limit {s.grid_limit_kw:g} kW")
    if inst.pv:
        arrays = "; ".join(f"{a.kwp:g} kWp az {a.azimuth_deg:g} tilt {a.tilt_deg:g}" for a in inst.pv.arrays)
        table.add_row("pv", f"{arrays}; inverter {inst.pv.inverter_kw:g} kW")
    else:
        table.add_row("pv", "none in config (scenario must carry measured pv_kw)")
    table.add_row("battery", f"{b.capacity_kwh:g} kWh, charge {b.max_charge_kw:g} kW, "
                  f"discharge {b.max_discharge_kw:g} kW, round trip {b.round_trip_efficiency:.0%}, "
                  f"reserve {b.reserve_pct:g} %, wear {b.wear_eur_per_kwh:g} EUR/kWh")
    endpoint = f"{g.endpoint_soc_pct:g} % at {g.endpoint_hour:02d}:00" if g.endpoint_hour is not None else "off"
    night = (f"{g.night_end_soc_pct:g} % at sunrise - {g.night_end_offset_min:g} min"
             if g.night_end_soc_pct is not None else "off")
    table.add_row("goals", f"endpoint {endpoint}; night end {night}")
    table.add_row("strategy", inst.strategy.profile)
    table.add_row("load", f"{inst.load.annual_kwh:g} kWh/year ({inst.load.profile} profile when not measured)")
    console.print(table)

    when = pd.DatetimeIndex([pd.Timestamp(args.date, tz=s.timezone).tz_convert("UTC")])
    prices = Table(title=f"tariff {tariff.supplier} on {args.date} (EUR/kWh)")
    for col in ("EPEX EUR/MWh", "import", "export"):
        prices.add_column(col, justify="right")
    for epex in (-50.0, 0.0, 50.0, 100.0, 200.0, 400.0):
        prices.add_row(f"{epex:g}", f"{tariff.import_price([epex], when)[0]:.4f}",
                       f"{tariff.export_price([epex], when)[0]:.4f}")
    console.print(prices)
    console.print(f"energy tax {tariff.energy_tax(when)[0]:.5f} EUR/kWh excl. VAT, VAT factor "
                  f"{tariff.vat_factor(when)[0]:.2f}, net metering {'on' if tariff.net_metering else 'off'}")
    spreads = Table(title="spread rule: trade only when the price difference is at least")
    spreads.add_column("profile")
    spreads.add_column("spread EUR/kWh", justify="right")
    spreads.add_column("exports for trading")
    for profile in PROFILE_SPREAD_FACTOR:
        mark = " (yours)" if profile == inst.strategy.profile else ""
        trades = "yes" if exports_for_trading(profile) else "no"
        spreads.add_row(profile + mark, f"{tariff.spread(profile):.4f}", trades)
    console.print(spreads)
    return 0


# -------------------------------------------------------------------------------------------- scenario


def cmd_scenario_build(args: argparse.Namespace) -> int:
    from dwars.config import load_config
    from dwars.data.scenario import build_scenario, summarize, write_scenario
    from dwars.timegrid import parse_resolution

    inst = load_config(_path(args.config))
    minutes = parse_resolution(args.resolution)
    load = args.load if args.load == "profile" else _path(args.load)
    pv: Path | str | None = None
    if args.pv is not None:
        pv = "none" if args.pv.lower() == "none" else _path(args.pv)
    with console.status("building scenario: prices, load, weather, PV ..."):
        scn = build_scenario(
            inst,
            prices=[_path(p) for p in args.prices],
            start=args.start,
            end=args.end,
            minutes=minutes,
            weather=_path(args.weather) if args.weather else None,
            load=load,
            annual_load_kwh=args.annual_load_kwh,
            pv=pv,
            model_pv=args.model_pv,
            fill=None if args.fill_gaps == "none" else args.fill_gaps,
        )
        scn.meta["command"] = " ".join(["dwars", *sys.argv[1:]]) if sys.argv else ""
        out = write_scenario(scn, args.out)
    console.print(f"wrote [bold]{out}[/bold] ({len(scn.frame)} intervals of {minutes} min) and its .meta.json")
    for fill in scn.meta.get("fills", []):
        console.print(f"[yellow]filled:[/yellow] {fill}")
    _print_summary(summarize(scn, inst), str(out))
    return 0


def cmd_scenario_summary(args: argparse.Namespace) -> int:
    from dwars.config import load_config
    from dwars.data.scenario import read_scenario, summarize

    scn = read_scenario(_path(args.scenario))
    inst = load_config(_path(args.config)) if args.config else None
    summary = summarize(scn, inst)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary, str(args.scenario))
    return 0


def _print_summary(summary: dict[str, Any], title: str) -> None:
    head = Table(title=f"scenario {title}", show_header=False)
    head.add_column("what", style="bold")
    head.add_column("value")
    head.add_row("period (local)", f"{summary['start_local']} .. {summary['end_local']} ({summary['days']:g} days)")
    head.add_row("intervals", f"{summary['intervals']} x {summary['minutes']} min")
    head.add_row("price EUR/MWh", f"min {summary['price_min_eur_per_mwh']:.1f}, "
                 f"mean {summary['price_mean_eur_per_mwh']:.1f}, max {summary['price_max_eur_per_mwh']:.1f}; "
                 f"{summary['negative_price_hours']:g} h below zero")
    head.add_row("load", f"{summary['load_kwh']:,.0f} kWh")
    if summary["pv_kwh"] is not None:
        yield_txt = (f" ({summary['pv_specific_yield_kwh_per_kwp']:.0f} kWh/kWp)"
                     if "pv_specific_yield_kwh_per_kwp" in summary else "")
        head.add_row("pv", f"{summary['pv_kwh']:,.0f} kWh, {summary['pv_source']}{yield_txt}")
    console.print(head)
    months = Table(title="by month (local)")
    for col in ("month", "mean price EUR/MWh", "load kWh", "pv kWh"):
        months.add_column(col, justify="right")
    for row in summary["monthly"]:
        months.add_row(row["month"], f"{row['mean_price_eur_per_mwh']:.1f}", f"{row['load_kwh']:,.0f}",
                       _fmt(row["pv_kwh"], 0) if row["pv_kwh"] == row["pv_kwh"] else "-")
    console.print(months)


# -------------------------------------------------------------------------------------------------- pv


def cmd_pv_yield(args: argparse.Namespace) -> int:
    from dwars.config import load_config
    from dwars.data.weather import load_knmi_hourly
    from dwars.env.pv import pv_ac_kw
    from dwars.timegrid import parse_resolution

    inst = load_config(_path(args.config))
    if inst.pv is None:
        raise DwarsError(f"{args.config}: no [pv] section to model")
    weather = load_knmi_hourly(_path(args.weather))
    minutes = parse_resolution(args.resolution)
    ghi, temp = weather["ghi_w_per_m2"], weather["temp_air_c"]
    if minutes == 15:
        from dwars.data.resample import resample
        from dwars.env.irradiance import disaggregate_ghi

        ghi = disaggregate_ghi(ghi, inst.site, minutes=15)
        temp = resample(temp, "power", 15, 60)
    pv = pv_ac_kw(ghi.index, ghi, temp, inst.site, inst.pv, minutes)
    kwh = pv * (minutes / 60)
    months = kwh.groupby(kwh.index.tz_convert(inst.site.timezone).strftime("%Y-%m")).sum()
    table = Table(title=f"{inst.name}: modelled PV on {Path(args.weather).name} ({inst.pv.kwp:g} kWp)")
    table.add_column("month")
    table.add_column("kWh", justify="right")
    table.add_column("kWh/kWp", justify="right")
    for month, value in months.items():
        table.add_row(str(month), f"{value:,.0f}", f"{value / inst.pv.kwp:.1f}")
    total = float(kwh.sum())
    table.add_row("[bold]total[/bold]", f"[bold]{total:,.0f}[/bold]", f"[bold]{total / inst.pv.kwp:.0f}[/bold]")
    console.print(table)
    ghi_kwh = float((weather["ghi_w_per_m2"] / 1000).sum())
    days = len(weather) / 24
    console.print(f"irradiation {ghi_kwh:,.0f} kWh/m2 over {days:.0f} days; "
                  f"peak AC {pv.max():.2f} kW (inverter {inst.pv.inverter_kw:g} kW)")
    return 0


# -------------------------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dwars.config import load_config
    from dwars.data.scenario import read_scenario
    from dwars.policy.evaluate import evaluate
    from dwars.policy.registry import CONTROLLER_NAMES

    inst = load_config(_path(args.config))
    scenario = read_scenario(_path(args.scenario))
    names = [n.strip() for n in args.controllers.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTROLLER_NAMES]
    if unknown:
        raise DwarsError(f"--controllers: unknown {', '.join(unknown)}; choose from {', '.join(CONTROLLER_NAMES)}")
    columns = (TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        def factory(name: str, total: int):
            task = bar.add_task(name, total=total)
            return lambda done: bar.update(task, completed=done)

        log_file = None
        if args.log:
            from dwars.policy.decision_log import DecisionLog

            # A simulation can be re-run, so no fsync per record here (the Pi runtime keeps it on).
            log_file = DecisionLog(args.log, fsync=False)
        options = dict(seed=args.seed, policy_path=args.policy, shield=not args.no_shield,
                       ev_strategy=args.ev_strategy, divert=not args.no_divert)
        try:
            result = evaluate(inst, scenario, names, progress_factory=factory, decision_log=log_file,
                              voltage_mode=not args.no_voltage_mode, **options)
        finally:
            if log_file is not None:
                log_file.close()
        without = None
        if inst.voltage is not None and not args.no_voltage_mode:
            # The same run with the mode never on: the inverter trips that the mode saved, and what it cost.
            without = evaluate(inst, scenario, names, voltage_mode=False,
                               progress_factory=lambda name, total: factory(f"{name} (no mode)", total), **options)
            for name, r in result.results.items():
                r["without_voltage_mode"] = {k: without.results[name].get(k) for k in VOLTAGE_KEYS}
    _print_evaluation(result.results, f"{inst.name} on {Path(args.scenario).name}")
    if inst.voltage is not None:
        _print_voltage(result.results, without.results if without is not None else None)
    if args.log:
        console.print(f"decision log: [bold]{args.log}[/bold] (dwars log shield {args.log} --summary)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
        console.print(f"figures: [bold]{args.json}[/bold]")
    if args.plots:
        from dwars.policy.plots import busiest_day, plot_day, plot_monthly

        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        day = args.plot_day or busiest_day(result)
        paths = [plot_day(result, day, folder / f"day_{day}.png"), plot_monthly(result, folder / "monthly.png")]
        for p in paths:
            console.print(f"plot: [bold]{p}[/bold]")
    return 0


def _print_evaluation(results: dict[str, dict[str, Any]], title: str) -> None:
    table = Table(title=f"evaluation: {title}")
    for col in ("controller", "objective EUR", "energy EUR", "wear EUR", "end value EUR", "import kWh",
                "export kWh", "cycles", "violations", "saving vs none", "capture"):
        table.add_column(col, justify="left" if col == "controller" else "right")
    base = results.get("none", {}).get("objective_eur")
    best = results.get("oracle", {}).get("objective_eur")
    for name, r in results.items():
        v = r["violations"]
        saving = base - r["objective_eur"] if base is not None else None
        capture = (saving / (base - best)) if (base is not None and best is not None and base != best) else None
        table.add_row(name, f"{r['objective_eur']:,.2f}", f"{r['energy_cost_eur']:,.2f}", f"{r['wear_eur']:,.2f}",
                      f"{r['final_energy_value_eur']:,.2f}", f"{r['import_kwh']:,.0f}", f"{r['export_kwh']:,.0f}",
                      f"{r['equivalent_full_cycles']:.1f}", f"{v['reserve']}/{v['endpoint']}/{v['night_end']}",
                      _fmt(saving), f"{capture:.1%}" if capture is not None else "-")
    console.print(table)
    console.print("violations: reserve/endpoint/night end (reachable deadlines missed); "
                  "capture = saving / oracle saving")
    _print_loads(results)
    shielded = {n: r for n, r in results.items() if r.get("shield_interventions")}
    for name, r in shielded.items():
        rules = ", ".join(f"{rule} {count}" for rule, count in sorted(r["shield_by_rule"].items()))
        console.print(f"shield on {name}: {r['shield_interventions']} intervals with an intervention "
                      f"({r['shield_rate']:.1%}): {rules}")


def _print_loads(results: dict[str, dict[str, Any]]) -> None:
    """The EV, the boiler and the peak limit, when the home has them."""
    has_ev = any("ev_charged_kwh" in r for r in results.values())
    has_boiler = any("boiler_kwh" in r for r in results.values())
    has_peak = any(r.get("intervals_over_peak") for r in results.values()) or has_ev or has_boiler
    if not (has_ev or has_boiler):
        return
    table = Table(title="flexible loads")
    cols = ["controller"]
    if has_ev:
        cols += ["EV kWh", "left short", "short kWh"]
    if has_boiler:
        cols += ["boiler kWh", "boost kWh", "no hot water kWh"]
    if has_peak:
        cols += ["peak kW", "over peak"]
    for col in cols:
        table.add_column(col, justify="left" if col == "controller" else "right")
    for name, r in results.items():
        row = [name]
        if has_ev:
            row += [f"{r.get('ev_charged_kwh', 0):,.0f}", f"{r.get('ev_missed_departures', 0)}",
                    f"{r.get('ev_short_kwh', 0):.1f}"]
        if has_boiler:
            row += [f"{r.get('boiler_kwh', 0):,.0f}", f"{r.get('boiler_boost_kwh', 0):,.0f}",
                    f"{r.get('hot_water_unmet_kwh', 0):.1f}"]
        if has_peak:
            row += [f"{r['peak_import_kw']:.1f}", f"{r.get('intervals_over_peak', 0)}"]
        table.add_row(*row)
    console.print(table)
    console.print("left short: departures below the car's target; boost: boiler kWh switched on by a solar surplus; "
                  "peak: the highest interval import")


VOLTAGE_KEYS = ("objective_eur", "voltage_max_v", "hv_mode_hours", "inverter_trips", "trip_hours",
                "pv_lost_to_trips_kwh")


def _print_voltage(results: dict[str, dict[str, Any]], without: dict[str, dict[str, Any]] | None) -> None:
    """The grid-voltage table: high-voltage mode against the same run without it (``without`` None: one run)."""
    table = Table(title="grid voltage" if without is not None else "grid voltage (high-voltage mode off)")
    cols = ["controller", "highest V"]
    if without is not None:
        cols += ["mode hours", "trips", "trips without", "PV lost kWh", "PV lost without", "PV saved kWh",
                 "mode cost EUR"]
    else:
        cols += ["trips", "trip hours", "PV lost kWh"]
    for col in cols:
        table.add_column(col, justify="left" if col == "controller" else "right")
    for name, r in results.items():
        row = [name, f"{r.get('voltage_max_v', 0):.1f}"]
        if without is not None:
            w = without[name]
            row += [f"{r.get('hv_mode_hours', 0):,.1f}", f"{r.get('inverter_trips', 0)}",
                    f"{w.get('inverter_trips', 0)}", f"{r.get('pv_lost_to_trips_kwh', 0):,.1f}",
                    f"{w.get('pv_lost_to_trips_kwh', 0):,.1f}",
                    f"{w.get('pv_lost_to_trips_kwh', 0) - r.get('pv_lost_to_trips_kwh', 0):,.1f}",
                    f"{r['objective_eur'] - w['objective_eur']:+,.2f}"]
        else:
            row += [f"{r.get('inverter_trips', 0)}", f"{r.get('trip_hours', 0):,.1f}",
                    f"{r.get('pv_lost_to_trips_kwh', 0):,.1f}"]
        table.add_row(*row)
    console.print(table)
    if without is not None:
        console.print("trips: separate spells with the PV inverter offline (the voltage above "
                      "voltage.trip_v); without: the same run with high-voltage mode off; mode cost = objective "
                      "with the mode - without (negative: the mode pays)")
    else:
        console.print("trips: separate spells with the PV inverter offline (the voltage above voltage.trip_v)")


# -------------------------------------------------------------------------------------- fleet-evaluate


def cmd_fleet_evaluate(args: argparse.Namespace) -> int:
    """``dwars fleet-evaluate``: every home x scenario of a fleet file as Ray tasks, summed up per controller."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dwars.scale import cluster_cpus, ray_session, require_ray
    from dwars.scale.fleet import evaluate_fleet, load_fleet

    require_ray()
    if args.address and args.workers is not None:
        raise DwarsError("--workers: sets the CPUs of a local Ray; a cluster (--address) uses all of its own")
    names = [n.strip() for n in args.controllers.split(",") if n.strip()] if args.controllers is not None else None
    fleet = load_fleet(_path(args.fleet), controllers=names, seed=args.seed, policy=args.policy, max_homes=args.homes)
    total = len(fleet.homes) * len(fleet.scenarios)
    console.print(f"fleet {args.fleet}: {len(fleet.homes)} homes x {len(fleet.scenarios)} scenarios = {total} tasks; "
                  f"controllers {', '.join(fleet.controllers)} (savings against {fleet.baseline}), seed {fleet.seed}")
    t0 = time.perf_counter()
    with ray_session(args.address, args.workers) as ray:
        start_s = time.perf_counter() - t0
        console.print(f"Ray {ray.__version__}: {cluster_cpus(ray)} CPUs ({args.address or 'local'}), "
                      f"connected in {start_s:.1f} s")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err_console, transient=True) as bar:
            progress = bar.add_task("homes x scenarios", total=total)

            def on_task(task: Any, done: int, _total: int) -> None:
                bar.update(progress, completed=done)
                if task.error is not None:
                    bar.console.print(f"[red]failed:[/red] {escape(task.home)} on {escape(task.scenario)}: "
                                      f"{escape(task.error.splitlines()[0])}", highlight=False)

            report = evaluate_fleet(ray, fleet, args.out, ray_start_s=start_s, on_task=on_task)
    _print_fleet(report)
    return 1 if report.run.errors else 0


def _print_fleet(report: Any) -> None:
    fleet, run, meta = report.run.fleet, report.run, report.meta
    table = Table(title=f"fleet {fleet.source.name}: {report.homes['home'].nunique()} homes x "
                        f"{len(fleet.scenarios)} scenarios, per home summed over the scenarios")
    for col in ("controller", "homes", "mean cost EUR", f"mean saving vs {fleet.baseline} EUR", "p10", "p50", "p90",
                "capture mean", "capture median", "violations", "homes with violations"):
        table.add_column(col, justify="left" if col == "controller" else "right")
    for name, c in report.controllers.items():
        s = c["saving_eur"]
        share = [f"{c[k]:.1%}" if c[k] is not None else "-" for k in ("capture_mean", "capture_median")]
        table.add_row(name, str(c["homes"]), _fmt(c["objective_eur"]["mean"]), _fmt(s["mean"]), _fmt(s["p10"]),
                      _fmt(s["p50"]), _fmt(s["p90"]), *share, str(c["violations"]), str(c["homes_with_violations"]))
    console.print(table)
    by_scenario = Table(title="mean saving per home and scenario, EUR (capture)")
    by_scenario.add_column("controller")
    for spec in fleet.scenarios:
        by_scenario.add_column(spec.name, justify="right")
    for name, c in report.controllers.items():
        cells = []
        for spec in fleet.scenarios:
            s = c["by_scenario"].get(spec.name)
            cells.append("-" if s is None else _fmt(s["saving_eur_mean"]) + (
                f" ({s['capture_mean']:.0%})" if s["capture_mean"] is not None else ""))
        by_scenario.add_row(name, *cells)
    console.print(by_scenario)
    console.print("capture = saving / the oracle's saving (empty where the oracle saves under a cent); violations: "
                  "reserve, endpoint and night end (reachable deadlines missed)")
    for warning in run.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    if run.errors:
        console.print(f"[red]{len(run.errors)} of {len(run.tasks)} tasks failed[/red] (their homes are left out of "
                      "the figures above for those scenarios; tracebacks in fleet.json):")
        for task in run.errors:
            console.print(f"  {escape(task.home)} on {escape(task.scenario)}: {escape(task.error or '')}",
                          highlight=False, soft_wrap=True)
    seconds, cluster = meta["task_seconds"], meta["ray"]
    nodes = f"{cluster['nodes']} node" + ("s" if cluster["nodes"] != 1 else "")
    console.print(f"{seconds['count']} tasks in {meta['wall_s']:.1f} s on {cluster['cpus']} CPUs ({nodes}): "
                  f"{seconds['mean'] or 0:.2f} s per task on average, {seconds['sum']:.0f} s of work")
    out = report.paths[0].parent
    console.print(f"wrote {', '.join(str(p) for p in report.paths)}; every home in {out / 'homes'}, every built "
                  f"scenario in {out / 'scenarios'} (a row re-runs alone: fleet.json, rerun)")


# ------------------------------------------------------------------------------------------------- log


def cmd_log(args: argparse.Namespace) -> int:
    """``dwars log show FILE``: the last decisions ("laatste acties"), newest last."""
    from dwars.policy.decision_log import describe_action, local_label, parse_since, read_records

    since = parse_since(args.since, args.tz) if args.since else None
    records = read_records(_path(args.file), since=since)
    if args.controller:
        records = [r for r in records if r.get("controller") == args.controller]
    if not records:
        console.print(f"no decisions in {escape(str(args.file))}" + (f" since {args.since}" if args.since else ""))
        return 0
    shown = records[-args.limit:] if args.limit > 0 else records
    several = len({r.get("controller") for r in shown}) > 1
    table = Table(title=f"laatste acties: {escape(Path(args.file).name)} "
                        f"(last {len(shown)} of {len(records)} decisions, newest last)")
    table.add_column("local time", no_wrap=True)
    if several:
        table.add_column("controller")
    table.add_column("action", no_wrap=True)
    table.add_column("SoC %", justify="right")
    table.add_column("shield")
    table.add_column("reason")
    for r in shown:
        soc = r.get("soc_pct")
        rules = ", ".join(str(n.get("rule")) for n in r.get("interventions") or [])
        row = [local_label(r)]
        if several:
            row.append(escape(str(r.get("controller", "-"))))
        row += [escape(describe_action(r.get("applied"))), f"{soc:.1f}" if isinstance(soc, int | float) else "-",
                escape(rules) or "-", escape(str(r.get("reason") or "-"))]
        table.add_row(*row)
    console.print(table)
    return 0


def cmd_log_shield(args: argparse.Namespace) -> int:
    """``dwars log shield FILE``: the shield's interventions, and with --summary the counts per rule."""
    from dwars.policy.decision_log import (
        RULE_IDS,
        describe_action,
        local_label,
        parse_since,
        read_records,
        shield_summary,
    )

    if args.rule is not None and args.rule not in RULE_IDS:
        raise DwarsError(f"--rule {args.rule}: not a rule id; choose from {', '.join(RULE_IDS)}")
    since = parse_since(args.since, args.tz) if args.since else None
    records = read_records(_path(args.file), since=since)
    if args.controller:
        records = [r for r in records if r.get("controller") == args.controller]
    notes = [(r, n) for r in records for n in r.get("interventions") or []
             if args.rule is None or n.get("rule") == args.rule]
    shown = notes[-args.limit:] if args.limit > 0 else notes
    if not notes:
        what = f"rule {args.rule}" if args.rule else "the shield"
        console.print(f"no interventions by {what} in {len(records)} decisions in {escape(str(args.file))}")
    else:
        table = Table(title=f"shield: {escape(Path(args.file).name)} "
                            f"(last {len(shown)} of {len(notes)} interventions, newest last)")
        table.add_column("local time", no_wrap=True)
        table.add_column("rule")
        table.add_column("proposed -> applied")
        table.add_column("reden")
        table.add_column("reason")
        for r, n in shown:
            proposed = n.get("proposed") if isinstance(n.get("proposed"), dict) else r.get("proposed")
            applied = n.get("applied") if isinstance(n.get("applied"), dict) else r.get("applied")
            table.add_row(local_label(r), escape(str(n.get("rule"))),
                          escape(f"{describe_action(proposed)} -> {describe_action(applied)}"),
                          escape(str(n.get("reason_nl") or "-")), escape(str(n.get("reason_en") or "-")))
        console.print(table)
    if args.summary:
        s = shield_summary(records)
        counts = Table(title="shield interventions per rule")
        counts.add_column("rule")
        counts.add_column("interventions", justify="right")
        counts.add_column("share of decisions", justify="right")
        for rule, count in s["per_rule"].items():
            if args.rule is None or rule == args.rule:
                share = count / s["decisions"] if s["decisions"] else 0.0
                counts.add_row(escape(rule), str(count), f"{share:.1%}")
        console.print(counts)
        console.print(f"{s['decisions_with_intervention']} of {s['decisions']} decisions had an intervention "
                      f"(intervention rate {s['intervention_rate']:.1%}); {s['changed']} changed mode or power")
    return 0


def _add_scenario_arguments(parser: argparse.ArgumentParser, when: str = "") -> None:
    """--scenario, or --start/--days/--minutes to build one from the bundled 2024 samples (:func:`_run_scenario`)."""
    parser.add_argument("--scenario",
                        help=f"{when}scenario CSV to replay (default: built from the bundled 2024 samples)")
    parser.add_argument("--start", default="2024-06-01", metavar="YYYY-MM-DD",
                        help="first local day, without --scenario (default %(default)s)")
    parser.add_argument("--days", type=int, default=2, help="days, without --scenario (default %(default)s)")
    parser.add_argument("--minutes", type=int, choices=(15, 60), default=15, help="interval length (default 15)")


def _add_clock_arguments(parser: argparse.ArgumentParser, when: str = "") -> None:
    """--speed, --epoch and --start-at of a simulated clock (:func:`dwars.runtime.app.replay_clock`)."""
    parser.add_argument("--speed", type=float, default=1.0, help=f"{when}simulated seconds per real second")
    parser.add_argument("--epoch", type=float, metavar="UNIX_S",
                        help=f"{when}the real time (s since 1970) at which the clock showed its start; give "
                             "dwars run and dwars sim-inverter the same one so both run on one clock (default: now)")
    parser.add_argument("--start-at", metavar="TIME", help=f"{when}the clock's start (default: the scenario's)")


def _run_scenario(args: argparse.Namespace, inst: Any) -> Any:
    """The scenario of --scenario, else built from the bundled 2024 samples for --start/--days/--minutes."""
    import pandas as pd

    from dwars.data.io import sample_path
    from dwars.data.scenario import build_scenario, read_scenario

    if args.scenario:
        return read_scenario(_path(args.scenario))
    start = pd.Timestamp(args.start)
    end = (start + pd.Timedelta(days=args.days)).date().isoformat()
    with console.status("building the scenario from the bundled 2024 samples ..."):
        return build_scenario(inst, [sample_path("prices_2024.json.gz")], start.date().isoformat(), end,
                              args.minutes, weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)


def cmd_run(args: argparse.Namespace) -> int:
    """``dwars run``: the control loop. --simulate: against the simulated inverter, as fast as it goes;
    --replay: on a (simulated) clock with a scenario's inputs, against the inverter in the config."""
    from dwars.config import load_config

    inst = load_config(_path(args.config))
    if args.controller:
        inst = inst.replace(runtime=dataclasses.replace(inst.runtime, controller=args.controller))
    if args.simulate:
        return _run_simulated(args, inst)
    if args.replay:
        return _run_replay(args, inst)
    return _run_live(args, inst)


def _run_live(args: argparse.Namespace, inst: Any) -> int:
    import pandas as pd

    from dwars.runtime.app import RunPaths, run_live, run_until_stopped

    paths = RunPaths.for_config(inst, args.config)
    log_path = Path(args.log) if args.log else paths.decision_log
    r = inst.runtime
    console.print(f"dwars runs {escape(r.controller)} every {r.minutes} minutes: inverter {escape(r.inverter)} at "
                  f"{escape(r.inverter_host)}:{r.inverter_port}, prices from {escape(r.prices)}, PV forecast from "
                  f"{escape(r.weather)}, meter {escape(r.meter)}, Home Assistant "
                  f"{escape(r.mqtt_host) if r.mqtt_host else 'off'}; log {escape(str(log_path))}. Ctrl-C stops it.")
    end = pd.Timestamp(args.until) if args.until else None
    runner = run_until_stopped(run_live(inst, args.config, None, log_path, end, args.policy))
    if runner is not None:
        console.print(f"{runner.decisions} decisions ({runner.early} early), {runner.loop.failures} failed")
    return 0


def _run_replay(args: argparse.Namespace, inst: Any) -> int:
    import time

    import pandas as pd

    from dwars.data.scenario import read_scenario
    from dwars.runtime.app import RunPaths, replay_clock, run_replay, run_until_stopped

    scenario = read_scenario(_path(args.replay))
    start = pd.Timestamp(args.start_at) if args.start_at else None
    clock = replay_clock(scenario, start, args.speed, args.epoch if args.epoch is not None else time.time())
    log_path = Path(args.log) if args.log else RunPaths.for_config(inst, args.config).decision_log
    end = pd.Timestamp(args.until) if args.until else None
    runner = run_until_stopped(run_replay(inst, scenario, clock, log_path, end, args.policy, args.inverter_port,
                                          args.config))
    if runner is None:
        return 0
    console.print(f"{runner.decisions} decisions ({runner.early} early), {runner.loop.failures} failed intervals; "
                  f"log: {escape(str(log_path))}")
    return 0 if runner.loop.failures == 0 else 1


def cmd_sim_inverter(args: argparse.Namespace) -> int:
    """``dwars sim-inverter``: the simulated inverter as a process of its own, on a (simulated) clock."""
    import time

    import pandas as pd

    from dwars.config import load_config
    from dwars.policy.base import Home
    from dwars.runtime.app import replay_clock, run_until_stopped
    from dwars.runtime.sim_inverter import SimulatedInverter
    from dwars.runtime.sim_process import Actuals, serve_on_clock

    inst = load_config(_path(args.config))
    scenario = _run_scenario(args, inst)
    home = Home.from_installation(inst)
    actuals = Actuals.from_scenario(scenario, home)
    start = pd.Timestamp(args.start_at) if args.start_at else None
    clock = replay_clock(scenario, start, args.speed, args.epoch if args.epoch is not None else time.time())
    end = actuals.index[-1] + pd.Timedelta(minutes=scenario.minutes)

    async def serve() -> float:
        inverter = SimulatedInverter(home.battery, inst.battery.initial_energy_kwh, home.grid_limit_kw,
                                     port=args.port, now=max(clock.now(), actuals.index[0]))
        port = await inverter.start()
        print(f"simulated inverter listening on 127.0.0.1:{port}", flush=True)
        try:
            return await serve_on_clock(inverter, actuals, clock, end, args.trace)
        finally:
            await inverter.stop()

    cost = run_until_stopped(serve())
    if cost is not None:
        console.print(f"the simulated inverter ran to {end.tz_convert(inst.site.timezone):%Y-%m-%d %H:%M}: "
                      f"energy cost {cost:.2f} EUR")
    return 0


def _run_simulated(args: argparse.Namespace, inst: Any) -> int:
    import pandas as pd

    from dwars.policy.decision_log import read_records, shield_summary
    from dwars.runtime.simulate import compare, simulated_run

    scenario = _run_scenario(args, inst)
    controller = inst.runtime.controller
    log_path = Path(args.log or "out/run/decisions.jsonl")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path.is_file() and log_path.stat().st_size > 0:  # a dry run starts its own log; keep the last one
        kept = log_path.with_name(f"{log_path.stem}.previous{log_path.suffix}")
        log_path.replace(kept)
        console.print(f"the previous dry run's log is now {escape(str(kept))}")
    with console.status(f"running {controller} against the simulated inverter ({len(scenario.frame)} "
                        "intervals, Modbus TCP on 127.0.0.1) ..."):
        summary = simulated_run(inst, scenario, controller, log_path, args.policy)
    others = [c.strip() for c in args.compare.split(",") if c.strip() and c.strip() != controller]
    with console.status(f"running {', '.join(others)} the same way on the same days, for comparison ..."):
        reference = {name: r.figures for name, r in compare(inst, scenario, others, args.policy).items()}
    cmd_log(argparse.Namespace(file=str(log_path), since=None, tz=inst.site.timezone, controller=None,
                               limit=args.last))
    s = shield_summary(read_records(log_path))
    console.print(f"shield: {s['decisions_with_intervention']} of {s['decisions']} decisions had an intervention "
                  f"({s['intervention_rate']:.1%}); details: dwars log shield {escape(str(log_path))} --summary")
    local = scenario.index.tz_convert(inst.site.timezone)
    period = f"{local[0]:%a %d %b %Y %H:%M} to {local[-1] + pd.Timedelta(minutes=scenario.minutes):%a %d %b %H:%M}"
    table = Table(title=f"cost over {period} ({len(scenario.frame)} intervals of {scenario.minutes} min)")
    table.add_column("controller")
    table.add_column("cost EUR", justify="right")
    table.add_column("saving vs no battery EUR", justify="right")
    table.add_column("goals missed", justify="right")
    table.add_column("shield", justify="right")
    without = summary.cost_without_battery_eur
    rows = [(f"{controller} (this run)", summary.figures), *reference.items()]
    for name, figures in rows:
        missed = sum(figures["violations"].values()) if name != "none" else 0
        shield_rate = figures.get("shield_rate", 0.0)
        table.add_row(escape(name), f"{figures['objective_eur']:.2f}", f"{without - figures['objective_eur']:.2f}",
                      str(missed), f"{shield_rate:.1%}" if name not in ("none", "oracle") else "-")
    console.print(table)
    console.print(f"{summary.intervals} intervals decided, {summary.failures} failed; the battery ended at "
                  f"{summary.end_soc_pct:.0f} %. Every row ran through the same loop and simulated inverter over "
                  "Modbus TCP. Cost = energy + wear - the value of the energy the battery gained (dwars evaluate's "
                  "objective).")
    if summary.failures:
        console.print(f"[red]{summary.failures} intervals had no decision or the inverter did not take it: "
                      "see the log above[/red]")
    return 0 if summary.failures == 0 and summary.violations == 0 else 1


# ----------------------------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    try:
        from dwars.training.train import default_hyperparameters, train
    except ImportError as err:
        raise DwarsError(f"training needs the train extra: pip install 'dwars[train]' ({err})") from None
    import tomllib

    from dwars.config import load_config
    from dwars.training.data import recipe_installations, recipe_scenarios

    hyper = default_hyperparameters()
    if args.hyper:
        hyper = tomllib.loads(Path(args.hyper).read_text(encoding="utf-8"))
    base = load_config(_path(args.config))
    with console.status("building training scenarios from real data ..."):
        scenarios = recipe_scenarios(base, hyper["data"], args.data_dir)
    homes = recipe_installations(base, hyper["randomize"])
    console.print(f"training on {len(scenarios)} scenarios x {len(homes)} installations")
    result = train(scenarios, homes, args.out, hyper, total_timesteps=args.steps, resume=args.resume,
                   progress_bar=not args.no_progress)
    table = Table(title=f"training run in {result.folder}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    f = result.figures
    table.add_row("pairs (scenario x installation)", str(f["pairs"]))
    table.add_row("precompute", f"{f['precompute_s']:.1f} s")
    if "bc" in f:
        table.add_row("behaviour cloning", f"{f['bc']['samples']} samples, loss {f['bc']['loss_per_epoch'][0]:.3f} "
                      f"-> {f['bc']['loss_per_epoch'][-1]:.3f}, {f['bc']['wall_s']:.1f} s")
    if "ppo" in f:
        table.add_row("PPO", f"{f['ppo']['timesteps']} steps, {f['ppo']['steps_per_s']:.0f} steps/s, "
                      f"{f['ppo']['wall_s']:.1f} s")
    table.add_row("wall time", f"{f['wall_s']:.1f} s")
    console.print(table)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        from dwars.training.export import export_run
    except ImportError as err:
        raise DwarsError(f"export needs the train extra: pip install 'dwars[train]' ({err})") from None
    check = export_run(Path(args.run), Path(args.out), args.model)
    console.print(f"wrote [bold]{args.out}[/bold]: torch vs onnxruntime over {check['n']} observations: max |logit "
                  f"difference| {check['max_abs_logit_diff']:.1e}, same action {check['action_agreement']:.2%}")
    return 0


# ---------------------------------------------------------------------------------------------- sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    """``dwars sweep``: a Ray Tune sweep of ``dwars train``, judged by ``dwars evaluate`` on validation data."""
    try:
        import dwars.training.train  # noqa: F401 - the trials train: fail here, not in every trial
        from dwars.scale.space import load_sweep
        from dwars.scale.sweep import BASELINES, run_sweep
    except ImportError as err:
        raise DwarsError(f"dwars sweep needs the train and scale extras: pip install 'dwars[train,scale]' ({err})") \
            from None
    spec = load_sweep(_path(args.sweep))
    result = run_sweep(spec, args.out, address=args.address, workers=args.workers, num_samples=args.samples,
                       storage=args.storage, export=not args.no_export,
                       status=lambda text: console.print(f"[dim]{text}[/dim]"))
    metric = str(spec.options["metric"])
    table = Table(title=f"sweep {spec.path.name}: validation {metric} (EUR over {len(spec.validation_homes)} "
                        f"homes x {len(spec.validation_periods)} periods; lower is better)")
    table.add_column("#", justify="right")
    table.add_column("trial")
    for key in spec.distributions:
        table.add_column(key)
    table.add_column("reports", justify="right")
    table.add_column(f"best {metric}", justify="right")
    for name in BASELINES:
        table.add_column(f"vs {name}", justify="right")
    table.add_column("violations", justify="right")
    table.add_column("status")
    for rank, row in result.trials.iterrows():
        status = str(row["status"]) + (f": {row['error']}" if row["error"] else "")
        table.add_row(str(rank + 1), str(row["trial"]), *(_drawn(row[f"config/{k}"]) for k in spec.distributions),
                      str(row["reports"]), _fmt(row[metric]), *(_fmt(row.get(f"vs_{n}_eur")) for n in BASELINES),
                      _fmt(row.get("violations"), 0), status, style="bold" if rank == 0 else None)
    console.print(table)
    baselines = ", ".join(f"{name} {value:.2f}" for name, value in result.baselines.items())
    f = result.figures
    console.print(f"{f['trials']} trials on {f['cpus']} CPUs in {f['wall_s']:.0f} s; {f['stopped_early']} stopped "
                  f"early, {f['errors']} failed. Baselines on the same validation set: {baselines} EUR.")
    if "policy" in result.best:
        p = result.best["parity"]
        console.print(f"best policy: [bold]{result.best['policy']}[/bold] (torch vs onnxruntime: max |logit "
                      f"difference| {p['max_abs_logit_diff']:.1e}, same action {p['action_agreement']:.2%}); its "
                      f"recipe: {result.out / 'best_recipe.toml'}")
    console.print(f"all trials: {result.out / 'trials.csv'}, {result.out / 'sweep.json'}, "
                  f"{result.out / 'curves.png'}")
    return 1 if f["errors"] else 0


def _drawn(value: Any) -> str:
    """A drawn hyper-parameter: three significant digits for numbers (learning rates span decades)."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------- bill


def cmd_bill(args: argparse.Namespace) -> int:
    """``dwars bill``: a month's bill rebuilt from the meter and the prices; with an invoice, the difference and
    its most likely cause; and what the month would have cost at each supplier preset."""
    import pandas as pd

    from dwars.config import load_config
    from dwars.data.prices import load_prices
    from dwars.runtime.app import RunPaths
    from dwars.runtime.bill import (
        INVOICE_FIGURES,
        LINES,
        compare_invoice,
        compare_presets,
        load_invoice,
        load_readings_csv,
        month_bounds,
        preset_tariff,
        prices_from_cache,
        reconstruct_bill,
    )
    from dwars.runtime.meter_log import MeterLog, meter_log_path

    inst = load_config(_path(args.config))
    tz = inst.site.timezone
    invoice = load_invoice(_path(args.invoice)) if args.invoice else None
    month = args.month or (invoice.month if invoice is not None else None)
    if month is None:
        raise DwarsError("--month: give the month to bill (YYYY-MM), or an --invoice that names it")
    if invoice is not None and invoice.month != month:
        raise DwarsError(f"--month {month}: the invoice {args.invoice} is for {invoice.month}")
    supplier = args.supplier if args.supplier != "all" else (invoice.supplier if invoice is not None else "home")
    if invoice is not None and args.supplier != "all" and args.supplier != invoice.supplier:
        raise DwarsError(f"--supplier {args.supplier}: the invoice {args.invoice} is from {invoice.supplier}")
    tariff = preset_tariff(inst.tariff, supplier, tz, str(args.config))
    paths = RunPaths.for_config(inst, args.config)
    start, end = month_bounds(month, tz)
    if args.readings:
        readings = load_readings_csv(_path(args.readings))
    else:
        log_file = meter_log_path(paths.data_dir)
        if not log_file.is_file():
            raise DwarsError(f"no meter log at {log_file}: dwars run writes it when [runtime] meter is set; or give "
                             "the counters with --readings FILE.csv")
        with MeterLog(log_file) as meter_log:  # a day either side: a gap across the month's edge is split by time
            readings = meter_log.readings(start - pd.Timedelta(days=1), end + pd.Timedelta(days=1))
    if args.prices:
        prices = pd.concat([load_prices(_path(p), tz) for p in args.prices]).sort_index()
        prices = prices[~prices.index.duplicated(keep="last")]  # a later file overrides an earlier one
    else:
        prices = prices_from_cache(paths.price_cache, month, tz)
    fee = args.monthly_fee if supplier in ("home", inst.tariff.supplier) else None
    bill = reconstruct_bill(readings, prices, tariff, month, monthly_fee_eur=fee,
                            grid_fee_eur_per_month=args.grid_fee, tax_reduction_eur_per_year=args.tax_reduction)

    comparison = compare_invoice(bill, invoice) if invoice is not None else None
    who = "your [tariff]" if supplier == "home" else supplier
    table = Table(title=f"Bill for {month} at {escape(who)}, rebuilt from your meter (EUR)")
    table.add_column("line")
    table.add_column("EUR", justify="right")
    for key, label in LINES.items():
        table.add_row(label, f"{bill.lines[key]:,.2f}")
    table.add_row("[bold]Total incl. VAT[/bold]", f"[bold]{bill.total_eur:,.2f}[/bold]")
    console.print(table)

    readings_table = Table(title="Readings", show_header=False)
    readings_table.add_column("what", style="bold")
    readings_table.add_column("value")
    readings_table.add_row("intervals", f"{bill.measured_intervals} of {bill.expected_intervals} measured "
                           f"({bill.minutes} min readings, {bill.price_minutes} min prices)")
    readings_table.add_row("energy", f"{bill.figures['import_kwh']:.1f} kWh imported, "
                           f"{bill.figures['export_kwh']:.1f} kWh exported")
    for gap in bill.gaps:
        readings_table.add_row(gap.kind, escape(gap.describe(tz)))
    for note in bill.notes:
        readings_table.add_row("note", escape(note))
    console.print(readings_table)

    if comparison is not None:
        diff_table = Table(title=f"Invoice {escape(str(args.invoice))} vs your meter")
        for col in ("figure", "invoice", "dwars", "difference"):
            diff_table.add_column(col, justify="left" if col == "figure" else "right")
        for key in comparison.differences:
            diff_table.add_row(INVOICE_FIGURES[key], f"{comparison.invoice.figures[key]:,.2f}",
                               f"{bill.figures[key]:,.2f}", f"{comparison.differences[key]:+,.2f}")
        console.print(diff_table)
        causes = Table(title="Possible causes, best first")
        for col in ("cause", "size", "explains EUR", "mismatch left EUR", "plausible"):
            causes.add_column(col, justify="left" if col == "cause" else "right")
        for cause in comparison.causes[:6]:
            size = f"{cause.size * 100:+.2f} ct/kWh" if cause.unit == "EUR/kWh" else f"{cause.size:+.2f} {cause.unit}"
            causes.add_row(cause.key.replace("_", " "), size, f"{cause.explained_eur:+.2f}",
                           f"{cause.mismatch_eur:.2f}", "yes" if cause.plausible else "no")
        console.print(causes)
        console.print(escape(comparison.summary))

    if args.supplier == "all":
        presets = compare_presets(bill, inst.tariff, args.monthly_fee, str(args.config))
        per = Table(title=f"{month} at each supplier preset (same meter, prices, grid costs and tax reduction)")
        for col in ("supplier", "import EUR", "export EUR", "fixed fee EUR", "total EUR", "vs this bill"):
            per.add_column(col, justify="left" if col == "supplier" else "right")
        for key, row in presets.iterrows():
            per.add_row(escape(f"{row['name']} ({key})"), f"{row['energy_eur']:,.2f}", f"{row['export_eur']:,.2f}",
                        f"{row['fixed_eur']:,.2f}", f"{row['total_eur']:,.2f}", f"{row['vs_bill_eur']:+,.2f}")
        console.print(per)
    return 0


# ---------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwars",
        description="dwars: energy management for a Dutch home with solar panels, a battery and a dynamic tariff.",
        epilog=UNITS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dwars {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show informational log lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = sub.add_parser("config", help="check an installation file", epilog=UNITS,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    config_sub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a home's TOML and show its tariff and spread",
                                  epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("config", help="installation TOML, e.g. examples/home.toml")
    check.add_argument("--date", default="2024-06-01",
                       help="local date whose energy tax and VAT to show (YYYY-MM-DD; default %(default)s)")
    check.set_defaults(func=cmd_config_check)

    scenario = sub.add_parser("scenario", help="build or inspect scenario files")
    scenario_sub = scenario.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = scenario_sub.add_parser(
        "build", help="build a scenario CSV from price, weather and load files",
        description="Build the canonical scenario CSV (time, price_eur_per_mwh, load_kw, pv_kw or "
                    "ghi_w_per_m2 + temp_air_c) for whole local days.",
        epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("--config", required=True, help="installation TOML (time zone, PV, default annual load)")
    build.add_argument("--prices", nargs="+", required=True, metavar="FILE",
                       help="price files: EnergyZero-style JSON (EUR/MWh, local time) or the 15-minute CSV "
                            "(EUR/kWh); hourly and 15-minute files may be mixed")
    build.add_argument("--weather", metavar="FILE",
                       help="KNMI hourly file (uurgeg_*.txt or the dwars extract): PV is modelled from "
                            "global radiation (J/cm2 -> W/m2) and temperature")
    build.add_argument("--pv", metavar="FILE|none",
                       help="measured PV instead of weather: an OPSD household CSV, or 'none' (no panels)")
    build.add_argument("--model-pv", action="store_true",
                       help="write pv_kw modelled for the config instead of the weather columns")
    build.add_argument("--load", default="profile", metavar="FILE|profile",
                       help="'profile' (NEDU E1A standard profile, default), a NEDU profile file, an OPSD "
                            "household CSV or a scenario CSV with load_kw")
    build.add_argument("--annual-load-kwh", type=float, metavar="KWH",
                       help="scale the load to this many kWh per year (default for the profile: [load] "
                            "annual_kwh of the config)")
    build.add_argument("--start", required=True, metavar="YYYY-MM-DD", help="first local day")
    build.add_argument("--end", required=True, metavar="YYYY-MM-DD",
                       help="first local day NOT included (2024-01-01 .. 2025-01-01 is all of 2024)")
    build.add_argument("--resolution", default="15min", help="15min or 60min (default %(default)s)")
    build.add_argument("--fill-gaps", default="none", choices=("none", "hold", "interpolate"),
                       help="what to do with missing intervals: refuse (default), hold the last value, or "
                            "interpolate; every fill is reported")
    build.add_argument("--out", required=True, metavar="OUT.csv", help="scenario CSV to write")
    build.set_defaults(func=cmd_scenario_build)

    summary = scenario_sub.add_parser("summary", help="print what a scenario holds, per month",
                                      epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    summary.add_argument("scenario", help="scenario CSV")
    summary.add_argument("--config", help="installation TOML (to model PV when the scenario carries weather)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of tables")
    summary.set_defaults(func=cmd_scenario_summary)

    ev = sub.add_parser(
        "evaluate", help="run controllers over a scenario and compare their costs",
        description="Simulate each controller on a scenario (controllers see forecasts, the oracle the actuals) "
                    "and report energy cost, wear, end-of-period energy value, violations and savings.",
        epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--config", required=True, help="installation TOML")
    ev.add_argument("--scenario", required=True, help="scenario CSV (dwars scenario build)")
    ev.add_argument("--controllers", default="none,msc,rule,mpc,oracle",
                    help="comma-separated: none, msc, rule, mpc, mpc_shield, oracle, random, rl (default %(default)s)")
    ev.add_argument("--json", metavar="OUT.json", help="write the figures as JSON")
    ev.add_argument("--seed", type=int, default=0, help="seed of the forecast errors and of random (default 0)")
    ev.add_argument("--plots", metavar="DIR", help="write plots (a day per controller, costs per month) as PNG")
    ev.add_argument("--plot-day", metavar="YYYY-MM-DD", help="local day to plot (default: widest price range)")
    ev.add_argument("--policy", metavar="FILE.onnx", help="ONNX policy for the rl controller")
    ev.add_argument("--log", metavar="FILE.jsonl",
                    help="write every decision (proposed, applied, shield interventions, reason) as JSON Lines; "
                         "read it with dwars log show/shield")
    ev.add_argument("--no-shield", action="store_true",
                    help="run controllers without the safety shield (by default all but oracle and none go through it)")
    ev.add_argument("--ev-strategy", choices=("smart", "now"),
                    help="charge the [ev] car smartly or plainly (full power from arrival), whatever the config says")
    ev.add_argument("--no-divert", action="store_true",
                    help="leave the [boiler] to its own thermostat (no solar surplus switch), to see what it saves")
    ev.add_argument("--no-voltage-mode", action="store_true",
                    help="with [voltage]: never switch to high-voltage mode (one run; by default a second run "
                         "without the mode shows the inverter trips and PV it saves, and what it costs)")
    ev.set_defaults(func=cmd_evaluate)

    fl = sub.add_parser(
        "fleet-evaluate", help="evaluate many homes x scenarios on Ray: savings, capture and violations per controller",
        description="Evaluate every home of a fleet file (installation files and homes drawn at random) on every "
                    "scenario, one Ray task per home and scenario, on a local Ray or a cluster; writes fleet.csv "
                    "(home x scenario x controller), homes.csv (per home), fleet.json (savings distribution, capture, "
                    "violations, timings, errors), plots, and every home and scenario so that a row re-runs alone "
                    "with dwars evaluate. Needs pip install 'dwars[scale]'; see examples/fleet.toml.",
        epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    fl.add_argument("fleet", metavar="FLEET.toml", help="fleet file (see examples/fleet.toml)")
    fl.add_argument("--out", default="runs/fleet", help="results folder (default %(default)s)")
    fl.add_argument("--address", help="a running Ray cluster (ray://head:10001, head:6379 or auto); default: a local "
                                      "Ray started and stopped by the command")
    fl.add_argument("--workers", type=int, metavar="N", help="CPUs of the local Ray (default: all cores)")
    fl.add_argument("--controllers", metavar="C1,C2", help="instead of the file's (the baseline is always added)")
    fl.add_argument("--policy", metavar="FILE.onnx", help="ONNX policy for the rl controller (shipped to the workers)")
    fl.add_argument("--seed", type=int, help="instead of the file's: the drawn homes and the forecast errors")
    fl.add_argument("--homes", type=int, metavar="N", help="only the first N homes (a quick look)")
    fl.set_defaults(func=cmd_fleet_evaluate)

    rn = sub.add_parser(
        "run", help="the control loop: decide every interval and command the inverter (--simulate for now)",
        description="Run the runtime's control loop. With --simulate it drives a simulated inverter (a real "
                    "Modbus TCP server on 127.0.0.1 with the simulator's battery physics) over a scenario, as "
                    "fast as it goes, then prints the last actions, the shield's summary and the cost.",
        epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    rn.add_argument("--config", required=True, help="installation TOML")
    rn.add_argument("--simulate", action="store_true",
                    help="against a simulated inverter, in lock-step, as fast as it goes (a dry run)")
    rn.add_argument("--replay", metavar="SCENARIO.csv",
                    help="replay a scenario's inputs on a (simulated) clock against the inverter in the config")
    _add_clock_arguments(rn, "with --replay: ")
    rn.add_argument("--until", metavar="TIME", help="with --replay: stop at this time (default: the scenario's end)")
    rn.add_argument("--inverter-port", type=int, help="Modbus TCP port of the inverter (default: the config's)")
    _add_scenario_arguments(rn, "with --simulate: ")
    rn.add_argument("--controller", help="rule, mpc, mpc_shield, rl, ... (default: the config's runtime.controller)")
    rn.add_argument("--policy", metavar="FILE.onnx", help="ONNX policy for the rl controller")
    rn.add_argument("--log", metavar="FILE.jsonl",
                    help="the decision log (default: out/run/decisions.jsonl with --simulate, else "
                         "decisions.jsonl in the config's runtime.data_dir)")
    rn.add_argument("--last", type=int, default=12, metavar="N", help="last actions to show (default %(default)s)")
    rn.add_argument("--compare", default="none,rule", metavar="C1,C2",
                    help="controllers to score on the same days, for comparison (default %(default)s; '' for none)")
    rn.set_defaults(func=cmd_run)

    si = sub.add_parser(
        "sim-inverter", help="a simulated inverter (Modbus TCP on 127.0.0.1) running on a clock, for dry runs",
        description="Serve the SunSpec storage model of a simulated battery on 127.0.0.1 and play a scenario's "
                    "actual PV, load and prices on it along a (simulated) clock, whatever it is commanded; it "
                    "falls back to self-consumption when commands stop. Point dwars run --replay at it.",
        epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    si.add_argument("--config", required=True, help="installation TOML (battery, PV, tariff)")
    _add_scenario_arguments(si)
    si.add_argument("--port", type=int, default=0, help="TCP port (default: a free one, printed)")
    _add_clock_arguments(si)
    si.add_argument("--trace", metavar="FILE.jsonl", help="write the inverter's account of every interval here")
    si.set_defaults(func=cmd_sim_inverter)

    tr = sub.add_parser(
        "train", help="train the policy (behaviour cloning from the oracle, then MaskablePPO)",
        description="Train on real prices and KNMI weather from --data-dir (years in the recipe; 2025+ refused) with "
                    "the hyper-parameters of dwars/training/ppo.toml (or --hyper); needs pip install 'dwars[train]'.",
        epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "examples" / "home.toml"),
                    help="a home that is always in the training pool (default examples/home.toml)")
    tr.add_argument("--hyper", metavar="FILE.toml", help="hyper-parameters (default: dwars/training/ppo.toml)")
    tr.add_argument("--data-dir", help="folder with prices_nl_hourly/ and knmi_debilt/ (default from the file)")
    tr.add_argument("--out", default="runs/policy", help="run folder (default %(default)s)")
    tr.add_argument("--steps", type=int, help="PPO time steps (default from the file)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)

    xp = sub.add_parser("export", help="export a trained policy to ONNX (normalisation inside) and check parity",
                        epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    xp.add_argument("--run", default="runs/policy", help="run folder of dwars train (default %(default)s)")
    xp.add_argument("--model", default="model.zip", help="model file in the run folder (default %(default)s)")
    xp.add_argument("--out", default="dwars/policy/models/default.onnx", help="ONNX file (default %(default)s)")
    xp.set_defaults(func=cmd_export)

    sw = sub.add_parser(
        "sweep", help="hyper-parameter sweep of dwars train on Ray Tune, judged on validation data",
        description="Train one policy per point of a search space (PPO hyper-parameters, behaviour cloning on/off, "
                    "observation variants, seeds) as parallel Ray Tune trials; each reports dwars evaluate's "
                    "objective of its exported policy on the validation homes and periods, and ASHA stops those "
                    "that trail. The best is exported to ONNX with the parity check of dwars export. Needs "
                    "pip install 'dwars[train,scale]'; see docs/scale.md.",
        epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("sweep", metavar="SWEEP.toml", help="sweep file (see examples/sweep.toml)")
    sw.add_argument("--out", default="runs/sweep", help="results folder (default %(default)s)")
    sw.add_argument("--address", help="a running Ray cluster (ray://head:10001 or auto); default: a local Ray")
    sw.add_argument("--workers", type=int, help="CPUs of the local Ray (default: all cores)")
    sw.add_argument("--samples", type=int, help="draws of the space (default: num_samples of the file)")
    sw.add_argument("--storage", help="where Tune keeps trials and checkpoints (default OUT/tune; on a cluster a "
                                      "folder every node sees, or s3://...)")
    sw.add_argument("--no-export", action="store_true", help="do not export the best policy")
    sw.set_defaults(func=cmd_sweep)

    pv = sub.add_parser("pv", help="PV model tools")
    pv_sub = pv.add_subparsers(dest="action", required=True, metavar="ACTION")
    pv_yield = pv_sub.add_parser("yield", help="modelled PV energy per month for a config and a KNMI weather file",
                                 epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    pv_yield.add_argument("--config", required=True, help="installation TOML with a [pv] section")
    pv_yield.add_argument("--weather", required=True, help="KNMI hourly file")
    pv_yield.add_argument("--resolution", default="60min", help="15min or 60min (default %(default)s)")
    pv_yield.set_defaults(func=cmd_pv_yield)

    bl = sub.add_parser(
        "bill", help="rebuild a month's electricity bill from the meter and check it against the invoice",
        description="Rebuild a month's bill from the P1 meter's counters (the meter log that dwars run keeps, or a "
                    "CSV) and the day-ahead prices; with --invoice, compare it with your supplier's invoice and "
                    "name the most likely cause of a difference; and show what the month would have cost at each "
                    "supplier preset. The invoice TOML format is in the README (Supplier monitoring).",
        epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    bl.add_argument("--config", required=True, help="installation TOML (time zone, [tariff], runtime.data_dir)")
    bl.add_argument("--month", metavar="YYYY-MM", help="the calendar month (default: the invoice's)")
    bl.add_argument("--readings", metavar="FILE.csv",
                    help="meter counters: time,import_kwh_total,export_kwh_total (default: the meter log in the "
                         "config's runtime.data_dir)")
    bl.add_argument("--prices", nargs="+", metavar="FILE",
                    help="EPEX price files, as dwars scenario build reads them (default: the price cache in "
                         "runtime.data_dir, no network)")
    bl.add_argument("--invoice", metavar="FILE.toml", help="your supplier's invoice for the month (see the README)")
    bl.add_argument("--supplier", default="all", metavar="all|home|PRESET",
                    help="the tariff of the bill: a preset id or home (your [tariff]); 'all' (default) bills at the "
                         "invoice's supplier, else your [tariff], and adds a table of every preset")
    bl.add_argument("--monthly-fee", type=float, metavar="EUR",
                    help="your supplier's fixed fee per month, excl. VAT (default: the preset's; 0 for custom)")
    bl.add_argument("--grid-fee", type=float, default=0.0, metavar="EUR",
                    help="the grid operator's fixed costs per month (netbeheerkosten), excl. VAT (default 0)")
    bl.add_argument("--tax-reduction", type=float, metavar="EUR",
                    help="energy tax reduction per year (vermindering energiebelasting), excl. VAT (default: the "
                         "statutory figure of the year, 2024: 521.81; 0 when your supplier settles it yearly)")
    bl.set_defaults(func=cmd_bill)

    log_help = ("Read a decision log (JSON Lines, one record per decided interval; rotated files FILE.1 .. FILE.N "
                "are read too):\n"
                "  dwars log show FILE [--since DATE] [--limit N]     laatste acties: the last decisions\n"
                "  dwars log shield FILE [--rule ID] [--summary]      the safety shield's interventions\n"
                "Times are shown on the home's clock; see docs/decision-log.md for the record schema.")
    log_cmd = sub.add_parser("log", help="show the decision log: last actions, shield interventions",
                             description=log_help, epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    log_sub = log_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")

    def log_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", metavar="FILE", help="decision log, e.g. /var/lib/dwars/decisions.jsonl")
        p.add_argument("--since", metavar="YYYY-MM-DD|ISO",
                       help="only decisions from this local date (midnight) or time on; a time with an offset "
                            "(2024-03-29T11:00+00:00) is taken as is")
        p.add_argument("--tz", default="Europe/Amsterdam",
                       help="clock of a --since without an offset (default %(default)s)")
        p.add_argument("--controller", metavar="NAME", help="only decisions of this controller (rule, mpc, rl, ...)")
        p.add_argument("--limit", type=int, default=20, metavar="N",
                       help="show the last N rows, newest last; 0 = all (default %(default)s)")

    show = log_sub.add_parser("show", help="laatste acties: the last N decisions (local time, action, SoC, reason)",
                              epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    log_options(show)
    show.set_defaults(func=cmd_log)
    shield = log_sub.add_parser(
        "shield", help="the shield's interventions (rule, proposed -> applied, reason in Dutch and English)",
        epilog=UNITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    log_options(shield)
    shield.add_argument("--rule", metavar="ID",
                        help="only this rule: reserve, endpoint, night_end, spread, inkoop_only, negative_price, "
                             "power_limit, grid_limit or stale_input")
    shield.add_argument("--summary", action="store_true",
                        help="also print the interventions per rule and the intervention rate")
    shield.set_defaults(func=cmd_log_shield)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except DwarsError as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
