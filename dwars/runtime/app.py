"""Assemble ``dwars run`` from a home's config: driver, inputs, controller, shield, log, clock, hooks.

:func:`run_from_config` is what the command line (and the systemd unit, and the Home Assistant add-on) runs:
it connects to the inverter named in ``[runtime]``, opens the decision log in the data folder, and decides
every interval until stopped. ``replay`` (a scenario) and a simulated clock turn it into a dry run on a real
(or simulated) inverter: the same code path, with recorded inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.modes import Decision
from dwars.policy.base import Home
from dwars.policy.decision_log import DecisionLog
from dwars.policy.registry import make_controller
from dwars.policy.shield import Shield
from dwars.runtime.clock import Clock, SimulatedClock, SystemClock
from dwars.runtime.driver import InverterError, open_driver
from dwars.runtime.live import Runner, Trigger
from dwars.runtime.loop import ControlLoop, ReplayInputs

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


def driver_for(inst: Installation, host: str | None = None, port: int | None = None) -> Any:
    """The inverter driver that ``[runtime] inverter`` names (not yet connected); a map path is taken relative
    to the working folder."""
    r = inst.runtime
    kind = "sunspec" if r.inverter == "simulated" else r.inverter
    return open_driver(kind, host or r.inverter_host, port or r.inverter_port, device_id=r.inverter_unit_id)


async def run_replay(inst: Installation, scenario: Scenario, clock: Clock, log_path: Path,
                     until: pd.Timestamp | None = None, policy_path: str | None = None,
                     port: int | None = None) -> Runner:
    """The loop on ``clock`` with a scenario's inputs, against the inverter in the config; returns the runner."""
    home = Home.from_installation(inst)
    inputs = ReplayInputs(scenario, home)
    driver = driver_for(inst, port=port)
    driver.clock = lambda: (clock.now() - pd.Timestamp(0, tz="UTC")).total_seconds()  # rate limit on the clock
    try:
        await driver.connect()
    except InverterError as err:  # not fatal: the loop tries again every interval (safe mode after a few)
        log.error("%s; dwars keeps trying every interval", err)
    try:
        with DecisionLog(log_path) as decision_log:
            controller = make_controller(inst.runtime.controller, home, scenario, policy_path=policy_path)
            loop = ControlLoop(home, controller, driver, inputs, scenario.minutes, Shield(home), decision_log)

            def tell(trigger: Trigger, applied: Decision) -> None:
                log.info("%s %s: %s", trigger.start.tz_convert(home.timezone).strftime("%Y-%m-%d %H:%M"),
                         applied.describe(), applied.reason)

            runner = Runner(loop, clock, after_each=tell)
            end = until if until is not None else scenario.index[-1] + pd.Timedelta(minutes=scenario.minutes)
            await runner.run(end)
    finally:
        driver.close()
    return runner


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


__all__ = ["RunPaths", "SystemClock", "driver_for", "replay_clock", "run_replay", "run_until_stopped"]
