"""The measuring stick: figures follow the contract, the oracle is a lower bound, forecasts do not leak."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.forecast import Forecaster
from dwars.policy.base import Home
from dwars.policy.evaluate import evaluate, run_controller
from dwars.policy.registry import make_controller

ALL = ["none", "msc", "rule", "mpc", "oracle", "random"]


@pytest.fixture(scope="module")
def result(week_60: Scenario, home_inst: Installation):
    return evaluate(home_inst, week_60, ALL, seed=0)


def test_json_contract(result) -> None:
    data = json.loads(json.dumps(result.to_json(), default=str))
    for name in ALL:
        r = data["controllers"][name]
        for key in ("objective_eur", "energy_cost_eur", "wear_eur", "final_energy_value_eur", "import_kwh",
                    "export_kwh", "curtailed_kwh", "equivalent_full_cycles", "shield_interventions", "steps"):
            assert isinstance(r[key], int | float), (name, key)
        assert set(r["violations"]) == {"reserve", "endpoint", "night_end"}
        assert r["steps"] == 7 * 24 - 1


def test_figures_recomputed_independently(result, home_inst: Installation) -> None:
    home = Home.from_installation(home_inst)
    dt = result.scenario.dt_h
    load = result.scenario.frame["load_kw"].to_numpy()
    for name, trace in result.traces.items():
        r = result.results[name]
        assert r["import_kwh"] == pytest.approx(trace.import_kw.sum() * dt)
        # Energy balance over the period: what came from the grid and PV went to the house, battery or grid.
        pv_used = result.pv_kw - trace.curtailed_kw
        np.testing.assert_allclose(trace.import_kw - trace.export_kw,
                                   load - pv_used + trace.charge_kw - trace.discharge_kw, atol=1e-9)
        cost = dt * (result.import_price * trace.import_kw - result.export_price * trace.export_kw).sum()
        assert r["energy_cost_eur"] == pytest.approx(cost, rel=1e-9, abs=1e-9)
        assert r["wear_eur"] == pytest.approx(dt * home.battery.wear_eur_per_kwh * trace.discharge_kw.sum())
        v = result.import_price[-24:].mean()
        assert r["final_energy_value_eur"] == pytest.approx(v * (trace.energy_kwh[-1] - trace.energy0_kwh))
        assert r["objective_eur"] == pytest.approx(r["energy_cost_eur"] + r["wear_eur"] - r["final_energy_value_eur"])


def test_none_keeps_the_battery_idle(result) -> None:
    none = result.traces["none"]
    assert np.all(none.charge_kw == 0) and np.all(none.discharge_kw == 0)
    assert result.results["none"]["curtailed_kwh"] == 0  # PV fully used or exported


def test_oracle_is_a_lower_bound(result) -> None:
    best = result.results["oracle"]["objective_eur"]
    for name in ALL:
        assert best <= result.results[name]["objective_eur"] + 1e-6, name


@pytest.mark.parametrize("scenario", ["week_15", "june_15"])
def test_oracle_is_a_lower_bound_on_every_test_scenario(scenario: str, request: pytest.FixtureRequest,
                                                        home_inst: Installation) -> None:
    scn = request.getfixturevalue(scenario)
    other = evaluate(home_inst, scn, ALL, seed=1)
    best = other.results["oracle"]["objective_eur"]
    for name in ALL:
        assert best <= other.results[name]["objective_eur"] + 1e-6, (scenario, name)
    assert other.results["oracle"]["violations"] == {"reserve": 0, "endpoint": 0, "night_end": 0}


def test_battery_saves_money_and_goals_hold(result) -> None:
    none = result.results["none"]["objective_eur"]
    for name in ("msc", "rule", "mpc", "oracle"):
        assert result.results[name]["objective_eur"] < none, name
    for name in ("rule", "oracle"):
        assert result.results[name]["violations"]["reserve"] == 0


def test_15_min_and_hourly_evaluations_agree(week_15: Scenario, week_60: Scenario, home_inst: Installation) -> None:
    a = evaluate(home_inst, week_15, ["none", "msc"], seed=0)
    b = evaluate(home_inst, week_60, ["none", "msc"], seed=0)
    for name in ("none", "msc"):
        assert a.results[name]["energy_cost_eur"] == pytest.approx(b.results[name]["energy_cost_eur"], rel=0.05)


@pytest.mark.parametrize("name", ["rule", "mpc"])
def test_forecasts_never_leak_actuals(name: str, week_60: Scenario, home_inst: Installation) -> None:
    """Perturbing actuals a controller cannot know yet (load and PV from the cut on, prices not yet
    published) must not change any decision before the cut."""
    home = Home.from_installation(home_inst)
    cut = 60  # interval index of 2024-03-29 ~12:00 local
    options = {"pv_mode": "clearsky_index", "load_mode": "history"}

    def decisions(scn: Scenario) -> list[tuple[int, float]]:
        pv = scn.pv_kw(home_inst).to_numpy()
        epex = scn.frame["price_eur_per_mwh"].to_numpy()
        imp = home.tariff.import_price(epex, scn.index)
        exp = home.tariff.export_price(epex, scn.index)
        forecaster = Forecaster(scn, home, seed=0, **options)
        controller = make_controller(name, home, scn, seed=0)
        trace = run_controller(controller, scn.window(scn.start, scn.index[cut]), home, forecaster, pv, imp, exp)
        return list(zip(trace.mode.tolist(), np.round(trace.power_kw, 9).tolist(), strict=True))

    base = decisions(week_60)
    frame = week_60.frame.copy()
    rng = np.random.default_rng(0)
    frame.iloc[cut:, frame.columns.get_loc("load_kw")] *= rng.uniform(0.2, 3.0, len(frame) - cut)
    frame.iloc[cut:, frame.columns.get_loc("pv_kw")] *= rng.uniform(0.0, 1.0, len(frame) - cut)
    unknown = cut + 36  # the next day's prices are published at 13:00 local; beyond that nothing is known
    frame.iloc[unknown:, frame.columns.get_loc("price_eur_per_mwh")] += 500.0
    perturbed = decisions(Scenario(frame, week_60.minutes, week_60.meta))
    assert perturbed == base


def test_cli_evaluate_writes_json_and_plots(tmp_path: Path, week_60: Scenario) -> None:
    from dwars.cli import main
    from dwars.data.scenario import write_scenario

    scn = write_scenario(week_60.window(week_60.start, week_60.start + np.timedelta64(2, "D")), tmp_path / "s.csv")
    out = tmp_path / "e.json"
    root = Path(__file__).resolve().parents[1]
    code = main(["evaluate", "--config", str(root / "examples" / "home.toml"), "--scenario", str(scn),
                 "--controllers", "none,msc,rule,oracle", "--json", str(out), "--plots", str(tmp_path / "plots")])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data["controllers"]) == {"none", "msc", "rule", "oracle"}
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert "monthly.png" in pngs and any(p.startswith("day_") for p in pngs)


def test_evaluate_writes_a_readable_decision_log(tmp_path: Path, week_60: Scenario, capsys) -> None:
    from dwars.cli import main
    from dwars.data.scenario import write_scenario
    from dwars.policy.decision_log import read_records, shield_summary

    scn = write_scenario(week_60.window(week_60.start, week_60.start + np.timedelta64(2, "D")), tmp_path / "s.csv")
    root = Path(__file__).resolve().parents[1]
    log = tmp_path / "decisions.jsonl"
    assert main(["evaluate", "--config", str(root / "examples" / "home.toml"), "--scenario", str(scn),
                 "--controllers", "msc,random", "--log", str(log)]) == 0
    records = read_records(log)
    assert len(records) == 2 * 48  # one record per interval per controller
    by = {name: [r for r in records if r["controller"] == name] for name in ("msc", "random")}
    summary = shield_summary(by["random"])
    assert summary["decisions"] == 48 and summary["decisions_with_intervention"] > 0
    changed = [r for r in by["random"] if r["interventions"]]
    assert all(r["reason"] for r in changed)
    capsys.readouterr()
    assert main(["log", "shield", str(log), "--summary", "--controller", "random"]) == 0
    out = capsys.readouterr().out
    assert "spread" in out or "endpoint" in out
