"""dwars fleet-evaluate: a 20-home fleet on a real local Ray, its aggregation, its files, and its errors.

One local Ray (2 CPUs, no dashboard) serves the module: its ~4 s start is paid once. The fleet is real: example
homes and drawn ones, scenarios built from the bundled 2024 prices and De Bilt weather, every figure from
dwars.policy.evaluate. The checks recompute what the aggregation claims from the rows, and compare rows with
evaluate run directly on one home.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import ray
from hypothesis import given, settings
from hypothesis import strategies as st

from dwars.cli import main
from dwars.config import BoilerConfig, ConfigError, EvConfig, GoalsConfig, SiteConfig, VoltageConfig, load_config
from dwars.data.io import sample_path
from dwars.data.scenario import build_scenario, read_scenario, write_scenario
from dwars.policy.evaluate import evaluate
from dwars.scale.fleet import (
    CAPTURE_MIN_SAVING_EUR,
    Fleet,
    FleetHome,
    FleetReport,
    FleetRun,
    TaskResult,
    evaluate_fleet,
    fleet_table,
    homes_table,
    load_fleet,
)
from dwars.scale.homes import installation_toml, write_installation
from dwars.training.randomize import random_installation

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PRICES = "sample:prices_2024.json.gz"
WEATHER = "sample:knmi_debilt_260_2024_T_Q.csv.gz"
CONTROLLERS = ("none", "rule", "oracle")
TOL_EUR = 1e-9


def scenario_toml(name: str, start: str, end: str, prices: str = PRICES, minutes: int = 60) -> str:
    return (f'[[scenario]]\nname = "{name}"\nprices = "{prices}"\nweather = "{WEATHER}"\nstart = "{start}"\n'
            f'end = "{end}"\nminutes = {minutes}\n')


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def fleet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 homes: 5 example files (one through a glob) and 15 drawn; two scenarios of three winter and summer days."""
    folder = tmp_path_factory.mktemp("fleet")
    path = folder / "fleet.toml"
    homes = [str(EXAMPLES / "h*.toml"), str(EXAMPLES / "east_west.toml"), str(EXAMPLES / "large_battery.toml"),
             str(EXAMPLES / "weak_street.toml")]
    path.write_text(
        "[fleet]\n"
        f"homes = {json.dumps(homes)}\n"
        "random_homes = 15\nseed = 3\n"
        f"controllers = {json.dumps(list(CONTROLLERS))}\n"
        'baseline = "none"\n\n'
        + scenario_toml("winter days", "2024-01-08", "2024-01-11") + "\n"
        + scenario_toml("summer days", "2024-07-08", "2024-07-11"),
        encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def report(ray_local: Any, fleet_file: Path, tmp_path_factory: pytest.TempPathFactory) -> FleetReport:
    fleet = load_fleet(fleet_file)
    return evaluate_fleet(ray_local, fleet, tmp_path_factory.mktemp("out"))


def out_of(report: FleetReport) -> Path:
    return report.paths[0].parent


# --------------------------------------------------------------------------------------------- the 20-home run


def test_every_home_scenario_and_controller_has_a_row(report: FleetReport) -> None:
    out = out_of(report)
    rows = pd.read_csv(out / "fleet.csv")
    homes = pd.read_csv(out / "homes.csv")
    assert report.run.errors == []
    assert homes["home"].nunique() == 20
    assert {"home", "home_ev", "east-west", "large-battery", "weak_street"} <= set(homes["home"])
    assert sorted(h for h in homes["home"].unique() if h.startswith("random-")) == [f"random-{k:02d}"
                                                                                   for k in range(1, 16)]
    assert len(rows) == 20 * 2 * len(CONTROLLERS)
    assert not rows.duplicated(["home", "scenario", "controller"]).any()
    assert set(rows["scenario"]) == {"winter days", "summer days"}
    assert len(homes) == 20 * len(CONTROLLERS)
    assert (homes["scenarios"] == 2).all()
    # Every home was written and reads back as the installation the tasks evaluated.
    for home in report.run.fleet.homes:
        assert load_config(out / "homes" / home.file_name) == home.installation
    for f in rows["scenario_file"].unique():
        assert (out / f).is_file()
    meta = json.loads((out / "fleet.json").read_text(encoding="utf-8"))
    assert meta["task_seconds"]["count"] == 40
    assert len(meta["tasks"]) == 40 and all(t["seconds"] > 0 for t in meta["tasks"])
    assert meta["ray"]["cpus"] == 2


def test_savings_are_the_baseline_minus_the_objective(report: FleetReport) -> None:
    out = out_of(report)
    rows = pd.read_csv(out / "fleet.csv")
    base = rows[rows["controller"] == "none"].set_index(["home", "scenario"])["objective_eur"]
    expected = base.loc[list(zip(rows["home"], rows["scenario"], strict=True))].to_numpy() - rows["objective_eur"]
    np.testing.assert_allclose(rows["saving_eur"], expected, atol=TOL_EUR)
    assert (rows.loc[rows["controller"] == "none", "saving_eur"].abs() < TOL_EUR).all()
    # homes.csv: the sum over the two scenarios, and fleet.json's distribution is that of homes.csv.
    homes = pd.read_csv(out / "homes.csv").set_index(["home", "controller"])
    summed = rows.groupby(["home", "controller"])[["saving_eur", "objective_eur", "violations"]].sum()
    np.testing.assert_allclose(homes.loc[summed.index, "saving_eur"], summed["saving_eur"], atol=TOL_EUR)
    np.testing.assert_allclose(homes.loc[summed.index, "objective_eur"], summed["objective_eur"], atol=TOL_EUR)
    meta = json.loads((out / "fleet.json").read_text(encoding="utf-8"))
    for controller in CONTROLLERS:
        savings = homes.xs(controller, level="controller")["saving_eur"].to_numpy()
        figures = meta["by_controller"][controller]["saving_eur"]
        assert figures["mean"] == pytest.approx(savings.mean())
        assert figures["p10"] == pytest.approx(np.percentile(savings, 10))
        assert figures["p90"] == pytest.approx(np.percentile(savings, 90))
        assert figures["min"] == pytest.approx(savings.min()) and figures["max"] == pytest.approx(savings.max())
        assert meta["by_controller"][controller]["homes"] == 20
    # The oracle plans on the actuals: over 20 homes and two scenarios it must save something.
    assert meta["by_controller"]["oracle"]["saving_eur"]["mean"] > 0


def test_capture_is_one_for_the_oracle_and_at_most_one_for_rule(report: FleetReport) -> None:
    rows = pd.read_csv(out_of(report) / "fleet.csv")
    defined = rows["oracle_saving_eur"] >= CAPTURE_MIN_SAVING_EUR
    assert defined.sum() > 0
    assert rows.loc[~defined, "capture"].isna().all()  # no share of nothing
    assert rows.loc[defined, "capture"].notna().all()
    oracle = rows[(rows["controller"] == "oracle") & defined]
    np.testing.assert_allclose(oracle["capture"], 1.0, atol=1e-12)
    rule = rows[(rows["controller"] == "rule") & defined]
    assert (rule["capture"] <= 1 + 1e-6).all(), rule[["home", "scenario", "capture"]]
    np.testing.assert_allclose(rule["capture"], rule["saving_eur"] / rule["oracle_saving_eur"], rtol=1e-12)
    homes = pd.read_csv(out_of(report) / "homes.csv")
    np.testing.assert_allclose(homes.loc[homes["controller"] == "oracle", "capture"].dropna(), 1.0, atol=1e-12)


@pytest.mark.parametrize("home_name", ["home_ev", "random-04"])
def test_rows_match_evaluate_run_directly(report: FleetReport, home_name: str) -> None:
    out = out_of(report)
    rows = pd.read_csv(out / "fleet.csv")
    fleet: Fleet = report.run.fleet
    home = next(h for h in fleet.homes if h.name == home_name)
    spec = fleet.scenarios[1]
    # Built independently here, from the home's own file, as dwars scenario build would: violations agree exactly,
    # figures to the CSV's six decimals of the inputs.
    inst = load_config(out / "homes" / home.file_name)
    scn = build_scenario(inst, [sample_path(PRICES.removeprefix("sample:"))], spec.start, spec.end, spec.minutes,
                         weather=sample_path(WEATHER.removeprefix("sample:")))
    direct = evaluate(inst, scn, ["none", "rule", "oracle"], seed=fleet.seed).results
    mine = rows[(rows["home"] == home_name) & (rows["scenario"] == spec.name)].set_index("controller")
    for controller in ("rule", "oracle"):
        v = direct[controller]["violations"]
        assert mine.loc[controller, "violations_reserve"] == v["reserve"]
        assert mine.loc[controller, "violations_endpoint"] == v["endpoint"]
        assert mine.loc[controller, "violations_night_end"] == v["night_end"]
        assert mine.loc[controller, "violations"] == sum(v.values())
        assert mine.loc[controller, "objective_eur"] == pytest.approx(direct[controller]["objective_eur"], abs=1e-3)
        assert mine.loc[controller, "equivalent_full_cycles"] == pytest.approx(
            direct[controller]["equivalent_full_cycles"], abs=1e-3)
    # And re-run from the files the row names, as fleet.json's rerun says: the same figures, exactly.
    again = evaluate(inst, read_scenario(out / mine.loc["rule", "scenario_file"]), ["none", "rule", "oracle"],
                     seed=fleet.seed).results
    for controller in ("none", "rule", "oracle"):
        assert mine.loc[controller, "objective_eur"] == again[controller]["objective_eur"]
        assert mine.loc[controller, "import_kwh"] == again[controller]["import_kwh"]


def test_violations_in_the_summary_are_those_of_the_rows(report: FleetReport) -> None:
    rows = pd.read_csv(out_of(report) / "fleet.csv")
    for controller in CONTROLLERS:
        mine = rows[rows["controller"] == controller]
        figures = report.controllers[controller]
        assert figures["violations"] == int(mine["violations"].sum())
        assert figures["homes_with_violations"] == int((mine.groupby("home")["violations"].sum() > 0).sum())
        for kind in ("reserve", "endpoint", "night_end"):
            assert figures["violations_by_kind"][kind] == int(mine[f"violations_{kind}"].sum())
    # none keeps the battery idle and is not held to the goals: it cannot violate anything.
    assert report.controllers["none"]["violations"] == 0


def test_plots_are_pngs(report: FleetReport) -> None:
    plots = out_of(report) / "plots"
    for name in ("savings.png", "capture.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_homes_with_the_same_site_and_load_share_a_built_scenario(report: FleetReport) -> None:
    rows = pd.read_csv(out_of(report) / "fleet.csv")
    files = rows.groupby("home")["scenario_file"].first()
    homes = {h.name: h.installation for h in report.run.fleet.homes}
    # The drawn homes all have the default [site] and [load]: one file per scenario for all of them ...
    assert files[[n for n in files.index if n.startswith("random-")]].nunique() == 1
    # ... and east_west (another location and load) has its own.
    assert files["east-west"] != files["random-01"]
    assert homes["east-west"].load.annual_kwh != homes["random-01"].load.annual_kwh


# ------------------------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def cli_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fleet through the CLI: a home that cannot be evaluated on weather (measured_pv.toml has no [pv]),
    rl with a --policy shipped to the workers, a price file of the driver's, and a prebuilt scenario with pv_kw."""
    folder = tmp_path_factory.mktemp("cli")
    shutil.copy(sample_path("prices_2024.json.gz"), folder / "prices_2024.json.gz")
    inst = load_config(EXAMPLES / "home.toml")
    scn = build_scenario(inst, [sample_path("prices_2024.json.gz")], "2024-05-06", "2024-05-08", 60,
                         weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)
    write_scenario(scn, folder / "may.csv")
    path = folder / "fleet.toml"
    path.write_text(
        "[fleet]\n"
        f'homes = ["{EXAMPLES / "measured_pv.toml"}", "{EXAMPLES / "home.toml"}"]\n'
        "random_homes = 1\nseed = 11\n"
        'controllers = ["rule", "rl", "oracle"]\n\n'
        + scenario_toml("march days", "2024-03-04", "2024-03-06", prices="prices_2024.json.gz") + "\n"
        + '[[scenario]]\nfile = "may.csv"\n',
        encoding="utf-8")
    return path


def test_cli_reports_a_failing_home_and_finishes_the_others(
        ray_local: Any, cli_fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = ROOT / "dwars" / "policy" / "models" / "default.onnx"
    out = tmp_path / "run"
    code = main(["fleet-evaluate", str(cli_fleet), "--out", str(out), "--policy", str(policy)])
    printed = capsys.readouterr()
    assert code == 1
    meta = json.loads((out / "fleet.json").read_text(encoding="utf-8"))
    # measured_pv.toml has no [pv]: on the weather scenario it fails, with the reason; on may.csv (pv_kw) it runs.
    assert [(e["home"], e["scenario"]) for e in meta["errors"]] == [("measured-pv", "march days")]
    assert "no [pv] section" in meta["errors"][0]["error"]
    assert "measured-pv" in printed.out and "no [pv] section" in printed.out
    rows = pd.read_csv(out / "fleet.csv")
    assert len(rows) == (3 * 2 - 1) * 4  # none (the baseline) added to rule, rl and oracle
    assert set(rows["controller"]) == {"none", "rule", "rl", "oracle"}
    # The prebuilt scenario's measured PV replaces every home's own: said in the output.
    assert any("carries measured PV" in w and "may" in w for w in meta["warnings"])
    assert "carries measured PV" in printed.out
    # rl ran with the shipped file and gives what evaluate gives on this machine with the same policy.
    inst = load_config(out / "homes" / "home.toml")
    row = rows[(rows["home"] == "home") & (rows["scenario"] == "march days")].set_index("controller")
    scn = read_scenario(out / row.loc["rl", "scenario_file"])
    direct = evaluate(inst, scn, ["none", "rl"], seed=11, policy_path=str(policy)).results
    assert row.loc["rl", "objective_eur"] == direct["rl"]["objective_eur"]
    # The driver's price file went to the workers through the object store; the build record names it.
    built = json.loads((out / row.loc["rl", "scenario_file"].replace(".csv", ".meta.json")).read_text())
    assert [Path(s["path"]).name for s in built["sources"] if s["kind"] == "prices"] == ["prices_2024.json.gz"]
    assert str(cli_fleet.parent) in built["sources"][0]["path"]
    assert "capture" in printed.out and "fleet.csv" in printed.out


@pytest.mark.parametrize(("text", "message"), [
    ('[fleet]\nhomes = ["home.toml"]\ncontrollers = ["none", "magic"]\n' + scenario_toml("a", "2024-01-01",
                                                                                        "2024-01-02"),
     "fleet.controllers: unknown 'magic'; choose from"),
    ('[fleet]\nhomes = ["nothere.toml"]\n' + scenario_toml("a", "2024-01-01", "2024-01-02"),
     "fleet.homes[0] = 'nothere.toml': file not found"),
    ('[fleet]\nhomes = ["nowhere/*.toml"]\n' + scenario_toml("a", "2024-01-01", "2024-01-02"),
     "fleet.homes[0] = 'nowhere/*.toml': matches no file"),
    ('[fleet]\nrandom_homes = 2\n[[scenario]]\nfile = "x.csv"\nprices = "sample:prices_2024.json.gz"\n',
     "scenario[0]: has both file and prices"),
    ('[fleet]\nrandom_homes = 2\n[[scenario]]\nname = "empty"\n', "scenario[0]: needs file"),
    ('[fleet]\nrandom_homes = 2\n' + scenario_toml("a", "2024-01-01", "2024-01-02", minutes=30),
     "scenario[0].minutes = 30: must be 15 or 60"),
    ('[fleet]\nrandom_homes = 2\n' + scenario_toml("a", "2024-01-01", "2024-01-02", prices="sample:nope.json"),
     "scenario[0].prices = 'sample:nope.json': sample 'nope.json' not found"),
    ('[fleet]\nrandom_homes = 2\n' + scenario_toml("a", "2024-01-05", "2024-01-02"),
     "scenario[0].end = '2024-01-02': must be after start"),
    ('[fleet]\nrandom_homes = 2\n' + scenario_toml("a", "2024-01-01", "2024-01-02").replace("weather", "wether"),
     "scenario[0].wether: unknown key; did you mean weather?"),
    ('[fleet]\nrandom_homes = -1\n' + scenario_toml("a", "2024-01-01", "2024-01-02"),
     "fleet.random_homes = -1: must be a whole number"),
    ('[fleet]\nrandom_homes = 2\n' + scenario_toml("a", "2024-01-01", "2024-01-02") * 2,
     "scenario name 'a': used twice"),
    ("[fleet]\nseed = 1\n" + scenario_toml("a", "2024-01-01", "2024-01-02"), "fleet.homes: no homes"),
    ('[fleet]\nrandom_homes = 1\n[[scenario]]\nfile = "missing.csv"\n', "scenario[0].file = 'missing.csv': file not "
                                                                         "found"),
    ("[fleet]\nrandom_homes = 1\n", "scenario: none"),
])
def test_bad_fleet_files_give_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                            message: str) -> None:
    shutil.copy(EXAMPLES / "home.toml", tmp_path / "home.toml")
    path = tmp_path / "fleet.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    assert message in str(err.value)
    assert str(err.value).startswith(str(path))
    # The command stops there, before any Ray: the same words, exit code 2.
    assert main(["fleet-evaluate", str(path), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err.replace("\n", "")
    assert not (tmp_path / "out").exists()


def test_a_home_file_with_bad_values_is_named_with_its_problems(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[battery]\nreserve_pct = 120\n", encoding="utf-8")
    path = tmp_path / "fleet.toml"
    path.write_text('[fleet]\nhomes = ["*.toml"]\n' + scenario_toml("a", "2024-01-01", "2024-01-02"),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"fleet.homes\[0\] = '\*.toml': .*bad.toml: battery.reserve_pct = 120"):
        load_fleet(path)


def test_command_line_overrides_and_duplicate_names(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(f'[fleet]\nhomes = ["{EXAMPLES / "home.toml"}", "{EXAMPLES / "home.toml"}", "{EXAMPLES}/home*"]\n'
                    'random_homes = 3\nseed = 1\ncontrollers = ["rule"]\n'
                    + scenario_toml("a", "2024-01-01", "2024-01-02"), encoding="utf-8")
    fleet = load_fleet(path)
    # The same file twice is one home; the baseline is added first.
    assert [h.name for h in fleet.homes] == ["home", "home_ev", "random-01", "random-02", "random-03"]
    assert fleet.controllers == ("none", "rule")
    other = load_fleet(path, seed=2, controllers=["oracle"], max_homes=3)
    assert [h.name for h in other.homes] == ["home", "home_ev", "random-01"]
    assert other.homes[2].installation != fleet.homes[2].installation  # another seed, another draw
    assert other.controllers == ("none", "oracle") and other.seed == 2
    with pytest.raises(ConfigError, match=r"--controllers: unknown 'mpcc' \(did you mean mpc\?\)"):
        load_fleet(path, controllers=["mpcc"])
    with pytest.raises(ConfigError, match="--policy 'no.onnx': file not found"):
        load_fleet(path, policy="no.onnx")
    # Two homes of one name: the second is renamed, with a warning, so their files and rows stay apart.
    twin = tmp_path / "twin.toml"
    twin.write_text('name = "home"\n', encoding="utf-8")
    path.write_text(f'[fleet]\nhomes = ["{EXAMPLES / "home.toml"}", "{twin}"]\n'
                    + scenario_toml("a", "2024-01-01", "2024-01-02"), encoding="utf-8")
    fleet = load_fleet(path)
    assert [h.name for h in fleet.homes] == ["home", "home-2"]
    assert fleet.homes[1].installation.name == "home-2"
    assert "two homes are named 'home'" in fleet.warnings[0]


def test_workers_and_address_do_not_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet-evaluate", str(EXAMPLES / "fleet.toml"), "--address", "auto", "--workers", "2"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_the_shipped_fleet_file_is_valid() -> None:
    fleet = load_fleet(EXAMPLES / "fleet.toml")
    assert len(fleet.homes) == 20
    assert len(fleet.scenarios) == 4 and {s.minutes for s in fleet.scenarios} == {60}
    assert "rl" in fleet.controllers and "oracle" in fleet.controllers


# ------------------------------------------------------------------------------------------------ aggregation


def _run(objectives: dict[str, float], controllers: tuple[str, ...]) -> FleetRun:
    inst = random_installation(np.random.default_rng(0), "h")
    fleet = Fleet(Path("fleet.toml"), (FleetHome("h", inst, "random"),), (), controllers, "none", 0)
    figures = {c: {"objective_eur": o, "energy_cost_eur": o, "wear_eur": 0.0, "final_energy_value_eur": 0.0,
                   "import_kwh": 1.0, "export_kwh": 1.0, "curtailed_kwh": 0.0, "equivalent_full_cycles": 0.0,
                   "shield_interventions": 0, "violations": {"reserve": 0, "endpoint": 0, "night_end": 0}}
               for c, o in objectives.items()}
    task = TaskResult("h", "s", figures, 0.1)
    return FleetRun(fleet, [task], {("h", "s"): "scenarios/s.csv"}, 1.0, 0.0, {})


def test_capture_needs_an_oracle_that_saves_at_least_a_cent() -> None:
    rows = fleet_table(_run({"none": 10.0, "rule": 9.0, "oracle": 8.0}, ("none", "rule", "oracle")))
    assert rows.set_index("controller")["capture"].to_dict() == pytest.approx({"none": 0.0, "rule": 0.5,
                                                                               "oracle": 1.0})
    tiny = fleet_table(_run({"none": 10.0, "rule": 10.001, "oracle": 9.995}, ("none", "rule", "oracle")))
    assert tiny["capture"].isna().all()
    assert tiny.set_index("controller").loc["rule", "saving_eur"] == pytest.approx(-0.001)
    no_oracle = _run({"none": 10.0, "rule": 9.0}, ("none", "rule"))
    rows = fleet_table(no_oracle)
    assert rows["capture"].isna().all() and rows["oracle_saving_eur"].isna().all()
    assert homes_table(no_oracle, rows)["capture"].isna().all()


# ------------------------------------------------------------------------------------------ homes as TOML files


def test_every_example_home_round_trips(tmp_path: Path) -> None:
    homes = [p for p in sorted(EXAMPLES.glob("*.toml"))
             if not {"fleet", "sweep"} & set(tomllib.loads(p.read_text(encoding="utf-8")))]  # not a home
    assert len(homes) >= 6
    for path in homes:
        inst = load_config(path)
        assert load_config(write_installation(inst, tmp_path / path.name, f"from {path}")) == inst, path.name


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.text(max_size=30), flex=st.sampled_from(["", "ev", "boiler", "both"]),
       voltage=st.booleans(), goals_off=st.booleans(), peak=st.none() | st.floats(0.5, 17.0),
       latitude=st.floats(-90, 90, allow_nan=False))
def test_drawn_installations_round_trip_through_toml(tmp_path_factory: pytest.TempPathFactory, seed: int, name: str,
                                                     flex: str, voltage: bool, goals_off: bool, peak: float | None,
                                                     latitude: float) -> None:
    inst = random_installation(np.random.default_rng(seed), name=name)
    inst = dataclasses.replace(
        inst, site=SiteConfig(latitude=latitude, import_peak_kw=peak),
        ev=EvConfig() if flex in ("ev", "both") else None,
        boiler=BoilerConfig(cop=3.1, priority="battery") if flex in ("boiler", "both") else None,
        voltage=VoltageConfig(margin_v=1.5) if voltage else None,
        goals=GoalsConfig(endpoint_hour=None, night_end_soc_pct=None) if goals_off else inst.goals)
    path = tmp_path_factory.mktemp("rt") / "home.toml"
    write_installation(inst, path)
    assert load_config(path) == inst
    assert installation_toml(inst).count("\n\n\n") == 0


def test_nan_free_json_and_finite_task_times(report: FleetReport) -> None:
    text = (out_of(report) / "fleet.json").read_text(encoding="utf-8")
    json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # strict: no NaN/Infinity
    assert all(math.isfinite(t.seconds) for t in report.run.tasks)
