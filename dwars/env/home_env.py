"""Gymnasium environment of a Dutch home with PV, a battery and a dynamic tariff, for training a policy."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.dispatch import simulate_interval, terminal_value_eur_per_kwh
from dwars.env.goals import deadlines
from dwars.env.modes import ACTION_MODES, N_ACTIONS, Decision, Mode, action_power_kw
from dwars.env.observation import N_OBS, OBS_VERSION, features, home_features, with_plan, with_soc
from dwars.policy.base import Home, State

Randomizer = Callable[[np.random.Generator, Installation], Installation]


class EpisodeData:
    """Everything an episode needs that does not depend on the actions, precomputed for a whole scenario.

    Built once per (scenario, installation) and cached by the env: actual PV, load and prices, the goal
    targets per interval, and the observation rows without their SoC entries (see
    :func:`dwars.env.observation.features`), from the forecasts a controller would see.
    """

    def __init__(self, scenario: Scenario, inst: Installation, seed: int, forecast_options: dict[str, Any]) -> None:
        from dwars.env.forecast import Forecaster

        self.scenario = scenario
        self.home = Home.from_installation(inst)
        self.minutes = scenario.minutes
        self.dt_h = scenario.dt_h
        self.pv_kw = scenario.pv_kw(inst).to_numpy()
        self.load_kw = scenario.frame["load_kw"].to_numpy()
        epex = scenario.frame["price_eur_per_mwh"].to_numpy()
        self.import_price = self.home.tariff.import_price(epex, scenario.index)
        self.export_price = self.home.tariff.export_price(epex, scenario.index)
        n = len(scenario.frame)
        # Minimum energy (kWh) required at the END of each interval by a goal, NaN where none falls due.
        self.goal_kwh = np.full(n, np.nan)
        step = pd.Timedelta(minutes=self.minutes)
        self.deadlines = deadlines(inst, scenario.start, scenario.end, self.minutes)
        for d in self.deadlines:
            k = int((d.time - scenario.start) / step) - 1
            if 0 <= k < n:
                target = self.home.battery.capacity_kwh * d.soc_pct / 100.0
                self.goal_kwh[k] = target if np.isnan(self.goal_kwh[k]) else max(self.goal_kwh[k], target)
        from dwars.policy.shield import Shield

        self.forecaster = Forecaster(scenario, self.home, seed=seed, **forecast_options)
        self.shield = Shield(self.home)
        self.obs = self._observations(self.forecaster)
        self._advisor: Any = None

    def state(self, i: int, energy_kwh: float) -> State:
        """The controller's State at interval ``i`` with ``energy_kwh`` in the battery."""
        soc_pct = 100.0 * energy_kwh / self.home.battery.capacity_kwh
        return State(self.scenario.index[i], self.minutes, energy_kwh, soc_pct)

    def advise(self, i: int, energy_kwh: float) -> tuple[Decision, np.ndarray]:
        """The MPC's decision and plan columns at interval ``i`` from ``energy_kwh`` (one LP solve)."""
        if self._advisor is None:
            from dwars.policy.advisor import PlanAdvisor

            self._advisor = PlanAdvisor(self.home)
        return self._advisor.advise(self.state(i, energy_kwh), self.forecaster.at(i))

    def _observations(self, forecaster: Any, chunk: int = 4096) -> np.ndarray:
        """Observation rows for every interval, from the forecaster's batch API (in chunks, to bound memory)."""
        n = len(self.scenario.frame)
        h = forecaster.horizon
        leads = np.arange(h)[None, :]
        goals = {kind: self._next_goal(kind, h) for kind in ("endpoint", "night_end")}
        local = self.scenario.index.tz_convert(self.home.timezone)
        base = home_features(self.home, self.minutes)
        out = np.empty((n, N_OBS), dtype=np.float32)
        for lo in range(0, n, chunk):
            issues = np.arange(lo, min(lo + chunk, n))[:, None]
            target = np.minimum(issues + leads, n - 1)
            known = (issues + leads < forecaster.price_known_end_index[issues]) & (issues + leads < n)
            imp = np.where(known, forecaster.import_price[target], 0.0)
            exp = np.where(known, forecaster.export_price[target], 0.0)
            pv = np.nan_to_num(forecaster.pv_forecast_batch(issues, leads))
            load = np.nan_to_num(forecaster.load_forecast_batch(issues, leads))
            rows = slice(lo, lo + len(issues))
            sel = {k: None if g is None else (g[0][rows], g[1][rows]) for k, g in goals.items()}
            out[rows] = features(base, local[rows], imp, exp, known, pv, load, self.minutes, sel["endpoint"],
                                 sel["night_end"])
        return out

    def _next_goal(self, kind: str, horizon: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(hours until, target soc) of the next deadline of ``kind`` within the horizon of each interval."""
        goals = self.home.installation.goals
        enabled = {"endpoint": goals.endpoint_hour is not None, "night_end": goals.night_end_soc_pct is not None}
        if not enabled[kind]:
            return None
        n = len(self.scenario.frame)
        step = pd.Timedelta(minutes=self.minutes)
        due = [(int((d.time - self.scenario.start) / step) - 1, d.soc_pct / 100.0) for d in self.deadlines
               if d.kind == kind]
        due = [(k, soc) for k, soc in due if 0 <= k < n]
        hours = np.full(n, np.nan)
        target = np.zeros(n)
        if not due:
            return hours, target
        ks = np.array([k for k, _ in due])
        socs = np.array([soc for _, soc in due])
        i = np.arange(n)
        j = np.searchsorted(ks, i, side="left")  # first deadline whose interval ends at or after i
        has = j < len(ks)
        jj = np.where(has, j, 0)
        within = has & (ks[jj] - i < horizon)
        hours[within] = (ks[jj][within] - i[within] + 1) * self.dt_h
        target[within] = socs[jj][within]
        return hours, target


class HomeEnergyEnv(gym.Env):
    """A home with PV, a battery and a dynamic tariff; each step is one interval (15 or 60 minutes).

    Description
        The agent chooses the battery mode for the coming interval. The interval is simulated with
        :func:`dwars.env.dispatch.simulate_interval` on the ACTUAL PV, load and prices of a real scenario,
        while the observation carries only what is known at that moment: the published day-ahead prices and
        PV and load forecasts (:mod:`dwars.env.forecast`).

    Action Space
        ``Discrete(42)``: 0 MSC, 1 HOLD, 2-21 IMPORT at 5, 10, ..., 100 % of max charge power, 22-41 EXPORT
        at 5, 10, ..., 100 % of max discharge power (:mod:`dwars.env.modes`). :meth:`action_masks` gives the
        allowed actions: those the safety shield accepts unchanged (MaskablePPO uses them).

    Observation Space
        ``Box(226,)`` float32, layout version ``OBS_VERSION`` = 4, documented index by index in
        :mod:`dwars.env.observation` (SoC, installation, clock, spread, prices per hour ahead and whether they
        are known, PV and load forecasts, time and energy to the next endpoint and night end, price ranks, and
        the MPC's plan from this state: one LP solve per step, :class:`~dwars.policy.advisor.PlanAdvisor`).
        An IMPORT/EXPORT action within one step of the step the plan's power rounds to carries out the plan's
        exact power (:func:`~dwars.env.modes.action_power_kw`).

    Rewards
        ``-(energy cost + wear)`` of the interval in EUR (:mod:`dwars.env.dispatch`). The last step of an
        episode also gets ``v * (e_T - e_0)``, the value of the energy left over at the episode's mean import
        price of its last 24 h, so that the sum of rewards is minus the evaluation objective. No shaping.

    Starting State
        A random whole local day of a random scenario and installation (uniform), SoC at the installation's
        ``initial_soc_pct``.

    Episode End
        Truncation after ``episode_days`` local days (or at the end of the scenario). No termination.

    Arguments
        scenarios : one or more :class:`~dwars.data.scenario.Scenario` (15 or 60 minutes).
        installations : one or more :class:`~dwars.config.Installation`.
        episode_days : episode length in local days (default 7).
        randomize : hook ``(rng, installation) -> installation`` applied at reset (domain randomisation of
            battery, tariff, profile, goals). Each new installation costs one precomputation of the scenario,
            so a hook should draw from a finite pool (results are cached, ``cache_size`` entries).
        forecast_options : keyword arguments of :class:`dwars.env.forecast.Forecaster`.
        forecast_seed : seed of the forecast errors.
        auto_curtail : curtail PV export whenever the export price is negative (what the shield does).
        cache_size : how many (scenario, installation) precomputations to keep.
        shield_mask : :meth:`action_masks` comes from the safety shield (else every action is allowed).
        shield_correct : the safety shield corrects each action before it is simulated, exactly as it corrects
            the controllers at run time (:meth:`~dwars.policy.shield.Shield.check`); use with
            ``shield_mask=False`` to train the policy on what the runtime does with its unmasked choice.

    Info
        ``energy_cost_eur``, ``wear_eur``, ``charge_kw``, ``discharge_kw``, ``import_kw``, ``export_kw``,
        ``curtailed_kw``, ``soc_pct``, ``goal_missed`` (a goal fell due this step and was missed by this many
        kWh, 0 otherwise), ``time`` (UTC start of the interval).

    Examples
        >>> from dwars.env.home_env import HomeEnergyEnv  # doctest: +SKIP
        >>> env = HomeEnergyEnv(scenario, installation, episode_days=2)  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> obs, reward, terminated, truncated, info = env.step(0)  # doctest: +SKIP
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - the Gymnasium convention

    def __init__(
        self,
        scenarios: Scenario | Sequence[Scenario],
        installations: Installation | Sequence[Installation],
        episode_days: int = 7,
        randomize: Randomizer | None = None,
        forecast_options: dict[str, Any] | None = None,
        forecast_seed: int = 0,
        auto_curtail: bool = True,
        cache_size: int = 8,
        shield_mask: bool = True,
        shield_correct: bool = False,
    ) -> None:
        super().__init__()
        self.shield_mask = shield_mask
        self.shield_correct = shield_correct
        self.scenarios = [scenarios] if isinstance(scenarios, Scenario) else list(scenarios)
        self.installations = [installations] if isinstance(installations, Installation) else list(installations)
        if not self.scenarios or not self.installations:
            raise ValueError("HomeEnergyEnv needs at least one scenario and one installation")
        self.episode_days = int(episode_days)
        self.randomize = randomize
        self.forecast_options = dict(forecast_options or {})
        self.forecast_seed = forecast_seed
        self.auto_curtail = auto_curtail
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, Installation], EpisodeData] = OrderedDict()
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(N_OBS,), dtype=np.float32)
        self.obs_version = OBS_VERSION
        self.data: EpisodeData | None = None
        self._i = self._start = self._end = 0
        self._energy = self._energy0 = 0.0
        self._advice: Decision | None = None

    # -- episode set-up --------------------------------------------------------------------------------
    def _episode_data(self, scenario_index: int, inst: Installation) -> EpisodeData:
        key = (scenario_index, inst)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        data = EpisodeData(self.scenarios[scenario_index], inst, self.forecast_seed, self.forecast_options)
        self._cache[key] = data
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return data

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode at a random local midnight; ``options`` may fix ``scenario``, ``installation``
        (indices) and ``start_day`` (YYYY-MM-DD)."""
        super().reset(seed=seed)
        options = options or {}
        s = int(options.get("scenario", self.np_random.integers(len(self.scenarios))))
        inst = self.installations[int(options.get("installation", self.np_random.integers(len(self.installations))))]
        if self.randomize is not None:
            inst = self.randomize(self.np_random, inst)
        self.data = self._episode_data(s, inst)
        index = self.data.scenario.index
        local = index.tz_convert(self.data.home.timezone)
        midnights = np.flatnonzero((local.hour == 0) & (local.minute == 0))
        if "start_day" in options:
            wanted = np.flatnonzero(np.asarray(local[midnights].strftime("%Y-%m-%d") == options["start_day"]))
            if not len(wanted):
                raise ValueError(f"start_day {options['start_day']} is not a whole day of the scenario")
            self._start = int(midnights[wanted[0]])
        else:
            # Any midnight that leaves a whole episode; the scenario's first one if it is short.
            per_day = 24 * 60 // self.data.minutes
            ok = midnights[midnights + self.episode_days * per_day <= len(index)]
            self._start = int(self.np_random.choice(ok)) if len(ok) else int(midnights[0] if len(midnights) else 0)
        end_local = (local[self._start].normalize().tz_localize(None) + pd.Timedelta(days=self.episode_days))
        end_utc = end_local.tz_localize(self.data.home.timezone).tz_convert("UTC")
        self._end = int(min(np.searchsorted(index, end_utc), len(index)))
        self._i = self._start
        self._energy0 = self._energy = inst.battery.initial_energy_kwh
        return self._observation(), {"time": index[self._i], "soc_pct": self._soc_pct()}

    # -- stepping ----------------------------------------------------------------------------------------
    def _terminal_reward(self) -> float:
        """Value of the energy gained over the episode, so that the return is minus the objective."""
        data = self.data
        assert data is not None
        window = slice(self._start, self._end)
        v = terminal_value_eur_per_kwh(data.scenario.index[window], data.minutes, data.import_price[window])
        return v * (self._energy - self._energy0)

    def _soc_pct(self) -> float:
        assert self.data is not None
        return 100.0 * self._energy / self.data.home.battery.capacity_kwh

    def _observation(self) -> np.ndarray:
        """The observation at the current interval: the precomputed row, the SoC and the MPC's plan (which
        :meth:`step` also uses: an action near the plan's step carries out the plan's exact power)."""
        assert self.data is not None
        i = min(self._i, len(self.data.obs) - 1)
        self._advice, plan = self.data.advise(i, self._energy)
        return with_plan(with_soc(self.data.obs[i].copy(), self._energy / self.data.home.battery.capacity_kwh), plan)

    def action_masks(self) -> np.ndarray:
        """Allowed actions (bool, length N_ACTIONS) from the safety shield (:mod:`dwars.policy.shield`), or all of
        them with ``shield_mask=False``. The shield sees the same forecasts as the observation."""
        data = self.data
        if data is None or not self.shield_mask:
            return np.ones(N_ACTIONS, dtype=bool)
        i = min(self._i, len(data.obs) - 1)
        return data.shield.mask(data.state(i, self._energy), data.forecaster.at(i))

    def carried_out(self, action: int) -> tuple[int, float, bool]:
        """(mode, power kW, curtail PV) that the simulator carries out for ``action`` at the current interval:
        the plan's exact power near its step, PV curtailed at a negative export price, and with
        ``shield_correct`` what the safety shield makes of it."""
        data = self.data
        assert data is not None
        i, b = self._i, data.home.battery
        mode = int(ACTION_MODES[action])
        power = action_power_kw(action, b.max_charge_kw, b.max_discharge_kw, self._advice)
        curtail = bool(self.auto_curtail and data.export_price[i] < 0)
        if self.shield_correct:
            proposal = Decision(Mode(mode), power, "", curtail)
            applied = data.shield.check(data.state(i, self._energy), data.forecaster.at(i), proposal).applied
            mode, power, curtail = int(applied.mode), float(applied.power_kw), bool(applied.curtail_pv)
        return mode, power, curtail

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        data = self.data
        if data is None:
            raise RuntimeError("call reset() before step()")
        a = int(action)
        if not 0 <= a < N_ACTIONS:
            raise ValueError(f"action {action}: must be 0..{N_ACTIONS - 1}")
        i = self._i
        b = data.home.battery
        mode, power, curtail = self.carried_out(a)
        r = simulate_interval(self._energy, mode, power, data.pv_kw[i], data.load_kw[i],
                              data.import_price[i], data.export_price[i], data.dt_h, b, data.home.grid_limit_kw,
                              curtail)
        energy_before = self._energy
        self._energy = float(r.energy_kwh)
        reward = -float(r.energy_cost_eur + r.wear_eur)
        goal = data.goal_kwh[i]
        missed = max(goal - self._energy, 0.0) if np.isfinite(goal) else 0.0
        self._i += 1
        truncated = self._i >= self._end
        if truncated:
            reward += self._terminal_reward()
        info = {
            "time": data.scenario.index[i],
            "energy_cost_eur": float(r.energy_cost_eur),
            "wear_eur": float(r.wear_eur),
            "charge_kw": float(r.charge_kw),
            "discharge_kw": float(r.discharge_kw),
            "import_kw": float(r.import_kw),
            "export_kw": float(r.export_kw),
            "curtailed_kw": float(r.curtailed_kw),
            "soc_pct": self._soc_pct(),
            "energy_before_kwh": energy_before,
            "goal_missed": missed,
        }
        return self._observation(), reward, False, truncated, info
