"""dwars sweep: a tiny Ray Tune sweep on local Ray, judged by dwars evaluate; the sweep file's checks."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from dwars.cli import main
from dwars.config import ConfigError
from dwars.scale.space import load_sweep
from dwars.scale.sweep import build_data, validation_figures

TINY = Path(__file__).parent / "fixtures" / "sweep" / "tiny.toml"


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sweep run once through the CLI on a local Ray of 2 CPUs (about half a minute)."""
    out = tmp_path_factory.mktemp("sweep")
    assert main(["sweep", str(TINY), "--out", str(out), "--workers", "2"]) == 0
    return out


def test_every_trial_of_the_space_runs_and_reports_the_validation_objective(tiny_sweep: Path) -> None:
    trials = pd.read_csv(tiny_sweep / "trials.csv")
    assert len(trials) == 4  # num_samples 2 x the grid of bc.enabled
    assert sorted(trials["config/bc.enabled"]) == [False, False, True, True]
    assert set(trials["config/env.observation"]) <= {"full", "no_plan"}
    assert trials["config/ppo.learning_rate"].between(1e-5, 1e-3).all()
    assert list(trials["objective_eur"]) == sorted(trials["objective_eur"])  # best first
    assert (trials["status"] != "error").all()
    # A trial that ran to the end reported after behaviour cloning and after each 256 of its 512 PPO steps.
    assert (trials.loc[trials["status"] == "finished", "reports"] == 3).all()
    assert (trials["objective_eur"] <= trials["last_objective_eur"] + 1e-9).all()


def test_asha_stops_a_trial_that_trails(tiny_sweep: Path) -> None:
    """Without behaviour cloning the untrained policy trails the cloned ones at the first report; with 2 CPUs the
    second such trial always meets a cloned trial's report at that rung and ASHA stops it."""
    trials = pd.read_csv(tiny_sweep / "trials.csv")
    stopped = trials[trials["status"] == "stopped early"]
    assert len(stopped) >= 1
    assert (stopped["reports"] < 3).all()
    assert not stopped["config/bc.enabled"].any()
    cloned = trials[trials["config/bc.enabled"]]
    assert stopped["objective_eur"].min() > cloned["objective_eur"].max()


def test_the_exported_best_policy_is_the_one_that_scored_best(tiny_sweep: Path) -> None:
    """Scoring best_policy.onnx again with dwars evaluate on the validation set gives the best trial's figure."""
    summary = json.loads((tiny_sweep / "sweep.json").read_text())
    best = summary["best"]
    trials = pd.read_csv(tiny_sweep / "trials.csv")
    assert best["trial"] == trials.iloc[0]["trial"]
    data = build_data(load_sweep(TINY))
    again = validation_figures(tiny_sweep / "best_policy.onnx", data.validation)
    assert again["objective_eur"] == pytest.approx(best["objective_eur"], abs=1e-9)
    assert best["parity"]["action_agreement"] == 1.0 and best["parity"]["max_abs_logit_diff"] < 1e-5
    meta = {p.key: p.value for p in onnx.load(tiny_sweep / "best_policy.onnx").metadata_props}
    assert meta["observation_variant"] == best["config/env.observation"]
    assert meta["trial"] == best["trial"] and meta["sweep"] == TINY.name
    # The baselines are dwars evaluate's own figures on the same validation set.
    rule = validation_figures(None, data.validation, "rule")["objective_eur"]
    assert summary["baselines"]["rule"] == pytest.approx(rule, abs=1e-9)
    assert best["vs_rule_eur"] == pytest.approx(best["objective_eur"] - rule, abs=1e-9)


def test_the_best_recipe_trains_again_with_dwars_train(tiny_sweep: Path) -> None:
    recipe = tomllib.loads((tiny_sweep / "best_recipe.toml").read_text())
    best = json.loads((tiny_sweep / "sweep.json").read_text())["best"]
    assert recipe["ppo"]["learning_rate"] == pytest.approx(best["config/ppo.learning_rate"], rel=1e-12)
    assert recipe["bc"]["enabled"] == best["config/bc.enabled"]
    assert recipe["env"]["observation"] == best["config/env.observation"]
    assert recipe["train"]["total_timesteps"] == 512 and recipe["ppo"]["net_arch"] == [32, 32]  # the fixed keys
    assert (tiny_sweep / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Tune kept one checkpoint per trial: the model of its best report.
    checkpoints = list((tiny_sweep / "tune").rglob("checkpoint_*"))
    assert len(checkpoints) == 4 and all((c / "model.zip").exists() for c in checkpoints)


BASE = TINY.read_text()


@pytest.mark.parametrize(("change", "message"), [
    (('"ppo.learning_rate" = { loguniform = [1e-5, 1e-3] }', '"ppo.learnig_rate" = 1e-4'),
     "has no key 'learnig_rate'"),
    (('loguniform = [1e-5, 1e-3]', 'loguniform = [0, 1e-3]'), "loguniform needs low > 0"),
    (('choice = ["full", "no_plan"]', 'choice = ["full", "no_prices"]'), "'no_prices' is not one of"),
    (('"randomize.pool_size" = 1', '"randomize.pool_size" = { choice = [1, 2] }'), "built once for all trials"),
    (('periods = [["2024-06-03", "2024-06-06"]]', 'periods = [["2025-06-03", "2025-06-06"]]'),
     "held-out test period"),
    (('periods = [["2024-06-03", "2024-06-06"]]', 'periods = [["2024-03-06", "2024-03-10"]]'),
     "overlaps the training period"),
    (('early_stopping = "asha"', 'early_stopping = "median"'), "sweep.early_stopping = 'median'"),
    (('"bc.enabled" = { grid = [true, false] }', '"bc.enabled" = { sometimes = [true] }'), "one of choice, grid"),
    (('homes = ["../../../examples/home.toml"]', 'homes = ["no_such_home.toml"]'), "no_such_home.toml"),
    (('minutes = 60\n\n[space]', 'minute = 60\n\n[space]'), "validation.minute: unknown key; did you mean minutes?"),
    (('num_samples = 2', 'recipe = "no_recipe.toml"\nnum_samples = 2'),
     "sweep.recipe = 'no_recipe.toml': no such file"),
])
def test_a_bad_sweep_file_is_refused_naming_the_key_and_value(tmp_path: Path, change: tuple[str, str],
                                                              message: str) -> None:
    old, new = change
    assert old in BASE
    path = tmp_path / "tests" / "fixtures" / "sweep" / "bad.toml"  # the homes at ../../../examples, as in the repo
    path.parent.mkdir(parents=True)
    path.write_text(BASE.replace(old, new))
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "home.toml").write_text((TINY.parents[3] / "examples" / "home.toml").read_text())
    path.with_name("good.toml").write_text(BASE)
    load_sweep(path.with_name("good.toml"))  # the copy without the change is fine: the change is the one problem
    with pytest.raises(ConfigError) as caught:
        load_sweep(path)
    assert len(caught.value.problems) == 1 and message in caught.value.problems[0], caught.value.problems


def test_the_space_draws_reproducibly_and_keeps_fixed_keys() -> None:
    spec = load_sweep(TINY)
    assert set(spec.distributions) == {"bc.enabled", "ppo.learning_rate", "env.observation"}
    recipe = spec.trial_recipe({"ppo.learning_rate": 3e-4, "env.n_envs": 4})
    assert recipe["ppo"]["learning_rate"] == 3e-4 and recipe["env"]["n_envs"] == 4
    assert spec.recipe["ppo"]["learning_rate"] != 3e-4  # the base recipe is not changed
    assert np.isclose(spec.recipe["ppo"]["gamma"], recipe["ppo"]["gamma"])


def test_the_example_sweep_file_is_valid() -> None:
    spec = load_sweep(TINY.parents[3] / "examples" / "sweep.toml")
    assert {"ppo.learning_rate", "bc.enabled", "env.observation", "train.seed"} <= set(spec.distributions)
    assert len(spec.validation_homes) == 3 and len(spec.validation_periods) == 4
    assert spec.data_period is None  # the recipe's years of real data
