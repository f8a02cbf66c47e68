"""One-step lookahead on the LP's value, and the MPC that knows the safety shield."""

from __future__ import annotations

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.forecast import Forecaster
from dwars.policy.base import Home, State
from dwars.policy.evaluate import evaluate
from dwars.policy.lookahead import ShieldAwareMpcController
from dwars.policy.mpc import MpcController


def test_the_shield_aware_mpc_needs_no_repairs_and_pays_less(week_60: Scenario, home_inst: Installation) -> None:
    """Spring week of 2024: the shield repairs the plain MPC's trades below the spread; the shield-aware MPC picks
    the allowed action its plan values most, which the shield never changes, and pays less for it."""
    ev = evaluate(home_inst, week_60, ["mpc", "mpc_shield"])
    mpc, aware = ev.results["mpc"], ev.results["mpc_shield"]
    assert mpc["shield_interventions"] > 0
    assert aware["shield_interventions"] == 0
    assert sum(aware["violations"].values()) == 0
    assert aware["objective_eur"] < mpc["objective_eur"] - 0.01, (aware["objective_eur"], mpc["objective_eur"])


def test_repair_keeps_allowed_plans_and_only_proposes_what_the_shield_allows(week_60: Scenario,
                                                                              home_inst: Installation) -> None:
    home = Home.from_installation(home_inst)
    forecaster = Forecaster(week_60, home)
    mpc, aware = MpcController(home), ShieldAwareMpcController(home)
    repaired = 0
    for i in range(0, len(week_60.index) - 3, 2):
        for energy in (2.5, 6.0, 9.5):  # low (near the 20 % reserve), middle, nearly full
            state = State(week_60.index[i], 60, energy, 10.0 * energy)
            fc = forecaster.at(i)
            plan = mpc.decide(state, fc)
            decision = aware.repair(state, fc, plan)
            if not aware.shield.check(state, fc, plan).interventions:
                assert decision is plan
            else:
                assert not aware.shield.check(state, fc, decision).interventions, (i, energy, plan, decision)
                assert "safety rules allow" in decision.reason
                repaired += decision is not plan
    assert repaired > 0
    assert aware.repairs == repaired
