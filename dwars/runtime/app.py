"""Assemble ``dwars run`` from a home's config: driver, inputs, controller, shield, log, clock, hooks.

:func:`run_live` is what the command line (and the systemd unit, and the Home Assistant add-on) runs: it
connects to the inverter named in ``[runtime]``, opens the decision log in the data folder, and decides every
interval until stopped. :func:`run_replay` (a scenario, and a simulated clock) turns it into a dry run on a real
(or simulated) inverter. Both are :func:`run_loop`: the same code path, with live or recorded inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.modes import Decision, Mode
from dwars.errors import DwarsError
from dwars.policy.base import Home
from dwars.policy.decision_log import DecisionLog
from dwars.policy.registry import make_controller
from dwars.policy.shield import Shield
from dwars.runtime.clock import Clock, SimulatedClock, SystemClock, Tick
from dwars.runtime.driver import InverterError, open_driver
from dwars.runtime.ledger import DayLedger, IntervalMeasurement, battery_ac_kw
from dwars.runtime.live import Runner
from dwars.runtime.loop import ControlLoop, ReplayInputs
from dwars.runtime.status import RuntimeStatus, next_charge_block

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RunPaths:
    """Where ``dwars run`` keeps its files (all in the config's ``runtime.data_dir``)."""

    data_dir: Path

    @classmethod
    def for_config(cls, inst: Installation, config_path: str | Path | None) -> RunPaths:
        folder = Path(inst.runtime.data_dir).expanduser()
        if not folder.is_absolute() and config_path is not None:
            folder = Path(config_path).resolve().parent / folder
        return cls(folder)

    @property
    def decision_log(self) -> Path:
        return self.data_dir / "decisions.jsonl"

    @property
    def price_cache(self) -> Path:
        return self.data_dir / "prices"

    @property
    def history(self) -> Path:
        return self.data_dir / "history.sqlite"


def planned_modes(controller: Any) -> np.ndarray | None:
    """The modes of the controller's current plan (IMPORT where it charges from the grid), None without one."""
    plan = getattr(controller, "last_plan", None)
    if plan is None:
        advisor = getattr(controller, "advisor", None)
        plan = getattr(getattr(advisor, "mpc", None), "last_plan", None)
    if plan is None:
        return None
    grid_charging = (np.asarray(plan.charge_kw) > 1e-3) & (np.asarray(plan.import_kw) > 1e-3)
    return np.where(grid_charging, int(Mode.IMPORT), int(Mode.MSC))


@dataclass(frozen=True)
class OpenInterval:
    """An interval as it began: start (UTC), battery energy (kWh), its prices (EUR/kWh) and PV (kW, forecast until
    the next decision brings the measured value)."""

    start: pd.Timestamp
    energy_kwh: float
    import_price_eur_per_kwh: float
    export_price_eur_per_kwh: float
    pv_kw: float


class StatusKeeper:
    """After each decision: cost the interval that just ended, and build the :class:`RuntimeStatus` snapshot.

    The finished interval's PV and load are the ``last_*`` measurements of the new state, its prices those the
    previous decision saw for its first interval, and the battery's energy change the difference of the two
    readings (the P1 meter's flows replace the inferred grid flows when ``meter_flows`` gives them).
    """

    def __init__(self, inst: Installation, loop: ControlLoop) -> None:
        self.inst = inst
        self.loop = loop
        self.ledger = DayLedger(inst.site.timezone, inst.battery.efficiency_one_way)
        self.open: OpenInterval | None = None  # the interval decided last, to be costed when the next one starts
        self.finished: OpenInterval | None = None  # the interval that ended at the last decision
        self.shield_day: pd.Timestamp | None = None
        self.shield_today = 0

    def after(self, trigger: Tick, applied: Decision,
              meter_flows: tuple[float, float] | None = None) -> RuntimeStatus | None:
        if self.loop.last is None or self.loop.last_forecasts is None:
            return None
        state, _ = self.loop.last
        f = self.loop.last_forecasts
        if trigger.early is None:
            self.finished = self.open
            done = self.open
            if done is not None and state.time - done.start == pd.Timedelta(minutes=state.minutes) \
                    and np.isfinite(state.last_pv_kw) and np.isfinite(state.last_load_kw):
                grid = meter_flows if meter_flows is not None else (None, None)
                self.ledger.add(IntervalMeasurement(done.start, state.minutes, state.last_pv_kw, state.last_load_kw,
                                                    state.energy_kwh - done.energy_kwh, done.import_price_eur_per_kwh,
                                                    done.export_price_eur_per_kwh, *grid))
            if done is not None and np.isfinite(state.last_pv_kw):  # measured PV replaces the forecast
                self.finished = dataclasses.replace(done, pv_kw=state.last_pv_kw)
            self.open = OpenInterval(state.time, state.energy_kwh, float(f.import_price_eur_per_kwh[0]),
                                     float(f.export_price_eur_per_kwh[0]), float(f.pv_kw[0])) \
                if f.n_price_known else None
        day = state.time.tz_convert(self.inst.site.timezone).normalize()
        if day != self.shield_day:
            self.shield_day, self.shield_today = day, 0
        self.shield_today += bool(self.loop.last_interventions)
        modes = planned_modes(self.loop.controller)
        block = None
        if modes is not None:
            block = next_charge_block(f.times[:len(modes)], modes[:len(f.times)], state.minutes)
        goals = self.inst.goals
        return RuntimeStatus(state.time, applied.mode.label, applied.reason, applied.signed_power_kw, state.soc_pct,
                             self.inst.battery.reserve_pct, goals.endpoint_soc_pct, goals.endpoint_hour,
                             block[0] if block else None, block[1] if block else None,
                             self.ledger.cost_eur, self.ledger.cost_without_battery_eur, self.shield_today,
                             self.loop.safe_mode, self.loop.controller.name, *self._voltage())

    def _voltage(self) -> tuple[float | None, bool]:
        watch = self.loop.voltage
        if watch is None:
            return None, False
        mean = watch.measured.mean_v
        return (float(mean) if np.isfinite(mean) else None), bool(watch.guard.active)


def driver_for(inst: Installation, host: str | None = None, port: int | None = None) -> Any:
    """The inverter driver that ``[runtime] inverter`` names (not yet connected); a map path is taken relative
    to the working folder."""
    r = inst.runtime
    kind = "sunspec" if r.inverter == "simulated" else r.inverter
    return open_driver(kind, host or r.inverter_host, port or r.inverter_port, device_id=r.inverter_unit_id)


def record_load(history: Any, keeper: StatusKeeper, state: Any, flows: tuple[float, float]) -> None:
    """The finished interval's house load into the load history: grid import - export + PV - the battery's AC
    power (PV as measured where the inputs have it, else as forecast for it)."""
    done = keeper.finished
    if done is None:
        return
    battery = battery_ac_kw(state.energy_kwh - done.energy_kwh, state.minutes / 60.0,
                            keeper.inst.battery.efficiency_one_way)
    load_kw = flows[0] - flows[1] + done.pv_kw - battery
    if np.isfinite(load_kw) and load_kw >= 0:
        history.record(done.start, state.minutes, load_kw)


def open_bridge(inst: Installation, config_path: str | Path | None,
                on_config_change: Callable[[Installation], None]) -> Any:
    """The Home Assistant bridge of ``[runtime] mqtt_host`` (None without one, or without a config file to edit)."""
    r = inst.runtime
    if not r.mqtt_host or config_path is None:
        return None
    from dwars.runtime.homeassistant import HomeAssistantBridge

    bridge = HomeAssistantBridge(r.mqtt_host, r.mqtt_port, config_path, username=r.mqtt_username or None,
                                 password=os.environ.get(r.mqtt_password_env) or None,
                                 on_config_change=on_config_change)
    return bridge.start()


class MeterWatch:
    """The P1 meter beside the loop: it asks for an early decision on a lasting unexpected import (a peak the plan
    did not foresee), and gives each finished interval's grid flows (from the meter's energy registers) and load.

    ``expected_grid_kw`` is what the last decision planned for the grid: forecast load - PV + the battery setpoint
    (0 in self-consumption, where the battery covers the house; load - PV in hold).
    """

    def __init__(self, meter: Any, poll_s: float = 2.0, threshold_kw: float = 1.5, hold_s: float = 30.0) -> None:
        from dwars.runtime.meter import PeakWatch

        self.meter = meter
        self.poll_s = float(poll_s)
        self.peaks = PeakWatch(threshold_kw, hold_s)
        self.expected_grid_kw = 0.0
        self.latest: Any = None
        self.listeners: list[Callable[[Any], Coroutine[Any, Any, None]]] = []  # each reading: load balancing, boiler
        self._totals: tuple[pd.Timestamp, float, float] | None = None  # interval start, import, export kWh

    def planned(self, forecasts: Any, applied: Decision) -> None:
        if applied.mode == Mode.MSC:
            self.expected_grid_kw = 0.0  # the battery covers the house, the PV surplus charges it
        else:
            self.expected_grid_kw = float(forecasts.load_kw[0] - forecasts.pv_kw[0]) + applied.signed_power_kw
        self.peaks.reset()

    async def watch(self, requests: asyncio.Queue[str]) -> None:
        from dwars.runtime.meter import MeterError

        while True:
            try:
                reading = await self.meter.read()
            except MeterError as err:
                log.warning("P1 meter: %s; trying again in %.0f s", err, self.poll_s)
            else:
                self.latest = reading
                for listener in self.listeners:
                    try:
                        await listener(reading)
                    except DwarsError as err:  # one listener's trouble must not stop the meter watch
                        log.error("P1 meter reading at %s: %s", reading.time.isoformat(), err)
                if self.peaks.update(reading, self.expected_grid_kw):
                    await requests.put(f"the grid import is {reading.net_kw:.1f} kW, "
                                       f"{reading.net_kw - self.expected_grid_kw:.1f} kW more than planned")
            await asyncio.sleep(self.poll_s)

    def flows(self, start: pd.Timestamp, minutes: int) -> tuple[float, float] | None:
        """Mean grid import and export (kW) of the interval that ended at ``start`` (None: not known), from the
        meter's energy registers read at the two interval starts."""
        reading = self.latest
        if reading is None:
            return None
        now = (start, float(reading.import_kwh_total), float(reading.export_kwh_total))
        before, self._totals = self._totals, now
        if before is None or start - before[0] != pd.Timedelta(minutes=minutes):
            return None
        dt_h = minutes / 60.0
        return max(now[1] - before[1], 0.0) / dt_h, max(now[2] - before[2], 0.0) / dt_h


def open_meter_watch(inst: Installation, poll_s: float = 2.0) -> MeterWatch | None:
    """The P1 meter of ``[runtime] meter`` (None: no meter): direct (DSMR, HomeWizard) or through Home Assistant.
    A DSMR meter streams; one connection is shared.

    Raises
    ------
    MeterError
        when the config cannot make a meter (no host, no Home Assistant token in the environment).
    """
    r = inst.runtime
    if r.meter == "none":
        return None
    from dwars.runtime.meter import LatestReading, open_configured_meter

    meter = open_configured_meter(r)
    if r.meter.startswith("dsmr"):
        meter = LatestReading(meter)
    return MeterWatch(meter, poll_s)


async def open_flex(inst: Installation, minutes: int) -> Any:
    """The EV charger and the boiler switch of ``[ev]`` and ``[boiler]`` (a :class:`~dwars.runtime.flex.FlexRuntime`,
    inactive when the home has neither and no peak limit). A charger that cannot be reached now is logged; the
    loop tries it again every interval."""
    from dwars.runtime.charger import open_charger
    from dwars.runtime.flex import FlexRuntime
    from dwars.runtime.switch import open_switch

    charger = open_charger(inst.ev, inst.site) if inst.ev is not None else None
    if charger is not None:
        try:
            await charger.connect()
        except (DwarsError, OSError) as err:
            log.error("EV charger: %s; dwars tries again every interval", err)
    switch = open_switch(inst.boiler, inst.runtime) if inst.boiler is not None else None
    if switch is not None:
        switch.start()
    return FlexRuntime(inst, charger, switch, minutes)


def open_voltage_watch(inst: Installation, driver: Any, meter: MeterWatch | None, clock: Clock) -> Any:
    """High-voltage mode of ``[voltage]`` (None without the section); its boiler comes with
    :meth:`~dwars.runtime.voltage.VoltageWatch.use_boiler`.

    Raises
    ------
    ConfigError
        when the voltage is to come from the P1 meter and the config has none, or from an inverter whose register
        map has no grid-voltage registers.
    """
    cfg = inst.voltage
    if cfg is None:
        return None
    from dwars.config import ConfigError

    if cfg.source == "meter" and meter is None:
        raise ConfigError(['voltage.source = "meter": needs a P1 meter (runtime.meter), or set voltage.source = '
                           '"inverter" to read the grid voltage from the inverter'])
    if cfg.source == "inverter" and not getattr(driver, "has_grid_voltage", False):
        raise ConfigError([f'voltage.source = "inverter": the register map of runtime.inverter = '
                           f'{inst.runtime.inverter!r} names no grid-voltage registers; set voltage.source = "meter" '
                           f'(a DSMR 5 P1 meter reports the voltage per phase)'])
    from dwars.runtime.voltage import VoltageWatch

    return VoltageWatch(cfg, inst.battery.max_charge_kw, driver, now=lambda: clock.now().floor("us").to_pydatetime())


async def run_loop(inst: Installation, inputs_for: Callable[[Home], Any], minutes: int, clock: Clock,
                   log_path: Path, until: pd.Timestamp | None = None, policy_path: str | None = None,
                   port: int | None = None, config_path: str | Path | None = None,
                   scenario: Scenario | None = None, meter: MeterWatch | None = None,
                   history: Any | None = None) -> Runner:
    """Decide on ``clock`` until ``until`` (None: until stopped) against the inverter in the config.

    ``inputs_for(home)`` makes the inputs (live feeds or a replay); they are made again when Home Assistant
    changes the goals or the profile (the config file is rewritten by the bridge; the next decision uses it).
    """
    home = Home.from_installation(inst)
    driver = driver_for(inst, port=port)
    driver.clock = lambda: (clock.now() - pd.Timestamp(0, tz="UTC")).total_seconds()  # rate limit on the clock
    voltage = open_voltage_watch(inst, driver, meter, clock)  # a source that cannot work: before anything opens
    try:
        await driver.connect()
    except InverterError as err:  # not fatal: the loop tries again every interval (safe mode after a few)
        log.error("%s; dwars keeps trying every interval", err)
    changes: list[Installation] = []
    asyncio_loop = asyncio.get_running_loop()
    bridge = open_bridge(inst, config_path, lambda new: asyncio_loop.call_soon_threadsafe(changes.append, new))
    try:
        with DecisionLog(log_path) as decision_log:
            controller = make_controller(inst.runtime.controller, home, scenario, policy_path=policy_path)
            flex = await open_flex(inst, minutes)
            if voltage is not None:
                voltage.use_boiler(flex)
            loop = ControlLoop(home, controller, driver, inputs_for(home), minutes, Shield(home), decision_log,
                               flex=flex, voltage=voltage)
            if meter is not None and loop.flex is not None:
                meter.listeners.append(loop.flex.on_reading)
            if meter is not None and voltage is not None:
                meter.listeners.append(voltage.on_reading)
            keeper = StatusKeeper(inst, loop)

            def after_each(trigger: Tick, applied: Decision) -> None:
                flows = meter.flows(trigger.start, minutes) if meter is not None and not trigger.early else None
                if meter is not None and not trigger.early:  # the counters at this boundary, for `dwars bill`
                    from dwars.runtime.meter_log import record_counters
                    record_counters(RunPaths.for_config(keeper.inst, config_path).data_dir, trigger.start,
                                    meter.latest)
                status = keeper.after(trigger, applied, flows)
                if meter is not None and loop.last_forecasts is not None:
                    meter.planned(loop.last_forecasts, applied)
                if history is not None and flows is not None and loop.last is not None:
                    record_load(history, keeper, loop.last[0], flows)
                log.info("%s %s", trigger.start.tz_convert(home.timezone).strftime("%Y-%m-%d %H:%M"),
                         applied.describe())
                if bridge is not None and status is not None:
                    bridge.publish(status)
                while changes:  # Home Assistant changed the config: the next decision uses it
                    new = changes.pop(0)
                    new_home = Home.from_installation(new)
                    loop.home, loop.shield, loop.inputs = new_home, Shield(new_home), inputs_for(new_home)
                    loop.controller = make_controller(new.runtime.controller, new_home, scenario,
                                                      policy_path=policy_path)
                    keeper.inst = new
                    log.warning("config changed from Home Assistant: profile %s, reserve %g %%, endpoint %s %% at "
                                "%s h; the next decision follows it", new.strategy.profile, new.battery.reserve_pct,
                                f"{new.goals.endpoint_soc_pct:g}", new.goals.endpoint_hour)

            watchers = [meter.watch] if meter is not None else []
            if flex.charger is not None:
                watchers.append(flex.charger.watch)  # keeps the charger's setpoint alive, reports plug-in/out
            if voltage is not None:
                watchers.append(voltage.watch)  # decides again when high-voltage mode switches
            runner = Runner(loop, clock, after_each=after_each, watchers=tuple(watchers))
            if meter is not None and hasattr(meter.meter, "start"):
                await meter.meter.start()
            try:
                await runner.run(until)
            finally:
                if meter is not None and hasattr(meter.meter, "close"):
                    await meter.meter.close()
                flex.close()
    finally:
        if bridge is not None:
            bridge.close()
        driver.close()
    return runner


async def run_replay(inst: Installation, scenario: Scenario, clock: Clock, log_path: Path,
                     until: pd.Timestamp | None = None, policy_path: str | None = None,
                     port: int | None = None, config_path: str | Path | None = None,
                     meter_poll_s: float = 2.0) -> Runner:
    """The loop on ``clock`` with a scenario's inputs, against the inverter (and the P1 meter, if any) in the config;
    returns the runner."""
    end = until if until is not None else scenario.index[-1] + pd.Timedelta(minutes=scenario.minutes)
    return await run_loop(inst, lambda home: ReplayInputs(scenario, home), scenario.minutes, clock, log_path, end,
                          policy_path, port, config_path, scenario, meter=open_meter_watch(inst, meter_poll_s))


def live_inputs_for(inst: Installation, paths: RunPaths,
                    clock: Clock | None = None) -> tuple[Callable[[Home], Any], Any]:
    """``(inputs_for(home), load history)`` of the live feeds in ``[runtime]``: prices (the chosen feed, then the
    other one where it can be used, then the disk cache), the PV forecast and the load history. The feeds and the
    history are made once and shared by the inputs made again after a config change."""
    from dwars.runtime.history import LoadHistory
    from dwars.runtime.live_inputs import LiveInputs
    from dwars.runtime.prices import ENERGYZERO_URL, ENTSOE_URL, EnergyZeroFeed, EntsoeFeed, PriceSource
    from dwars.runtime.weather_feed import OpenMeteoFeed, PvForecaster

    r = inst.runtime
    token = os.environ.get(r.entsoe_token_env, "")
    energyzero = EnergyZeroFeed(r.prices_url if r.prices == "energyzero" and r.prices_url else ENERGYZERO_URL)
    entsoe = EntsoeFeed(token, r.prices_url if r.prices == "entsoe" and r.prices_url else ENTSOE_URL) if token else None
    if r.prices == "entsoe" and entsoe is None:
        log.warning("runtime.prices = 'entsoe' but the environment variable %s holds no token: using EnergyZero",
                    r.entsoe_token_env)
    feeds = [f for f in ((entsoe, energyzero) if r.prices == "entsoe" else (energyzero, entsoe)) if f is not None]
    prices = PriceSource(feeds, paths.price_cache, tz=inst.site.timezone)
    weather = None
    if r.weather == "open-meteo":
        options = {"base_url": r.weather_url} if r.weather_url else {}
        weather = OpenMeteoFeed(inst.site.latitude, inst.site.longitude, r.minutes, **options)
    pv = PvForecaster(inst, r.minutes, weather)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    history = LoadHistory(paths.history, tz=inst.site.timezone)

    def inputs_for(home: Home) -> LiveInputs:
        return LiveInputs(home, r.minutes, prices, pv, history, clock)

    return inputs_for, history


async def run_live(inst: Installation, config_path: str | Path | None, clock: Clock | None = None,
                   log_path: Path | None = None, until: pd.Timestamp | None = None,
                   policy_path: str | None = None, meter_poll_s: float = 2.0) -> Runner:
    """``dwars run``: live feeds, the inverter and Home Assistant of the config, on the wall clock until stopped."""
    paths = RunPaths.for_config(inst, config_path)
    clock = clock or SystemClock()
    inputs_for, history = live_inputs_for(inst, paths, clock)
    meter = open_meter_watch(inst, meter_poll_s)
    if meter is None:
        log.warning("no P1 meter in the config (runtime.meter): the load forecast stays on the standard profile and "
                    "today's cost is inferred from the battery and the forecasts")
    return await run_loop(inst, inputs_for, inst.runtime.minutes, clock, log_path or paths.decision_log, until,
                          policy_path, None, config_path, meter=meter, history=history)


def replay_clock(scenario: Scenario, start: pd.Timestamp | None, speed: float,
                 epoch_unix_s: float | None) -> SimulatedClock:
    """A simulated clock for a replay: from ``start`` (default: the scenario's first interval) at ``speed``."""
    first = pd.Timestamp(start) if start is not None else pd.Timestamp(scenario.index[0])
    return SimulatedClock(first, speed, epoch_unix_s)


def run_until_stopped(main: Coroutine[Any, Any, T]) -> T | None:
    """Run ``main`` until it ends or the process is asked to stop (SIGTERM from systemd, SIGINT from Ctrl-C):
    then it is cancelled, its ``finally`` blocks close the log and the connection, and None is returned."""

    async def guarded() -> T | None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on every platform
                loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            log.warning("dwars run stopped; the inverter returns to its own self-consumption within its revert time")
            return None

    return asyncio.run(guarded())
