"""``dwars run``: the runtime as a home owner runs it, interval after interval until stopped.

:class:`Runner` puts the pieces together around one :class:`~dwars.runtime.loop.ControlLoop`:

- **when** to decide: every interval start of the clock (:func:`~dwars.runtime.clock.ticks`), and early,
  within the interval, when something asks for it (new day-ahead prices, an unexpected import peak on the P1
  meter);
- **what** it decides on: the inputs (live feeds, or a replayed scenario for a dry run on a real clock);
- **after** each decision: the status for Home Assistant and the measured load for the load history.

A stop (Ctrl-C, ``systemctl stop``, a crash) leaves nothing half done: every record is on disk when it is
written, the inverter falls back to its own self-consumption within the revert time, and a new ``dwars run``
continues the same log at the current interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from dwars.env.modes import Decision
from dwars.runtime.clock import Clock, Tick, ticks
from dwars.runtime.loop import ControlLoop

log = logging.getLogger(__name__)


class Runner:
    """Runs a :class:`ControlLoop` on a clock, with early re-decisions and after-decision hooks.

    Parameters
    ----------
    loop : the control loop (controller, shield, driver, inputs, decision log).
    clock : the wall clock (:class:`~dwars.runtime.clock.SystemClock`) or a simulated one.
    after_each : called with ``(trigger, applied)`` after every decision (Home Assistant status, history).
    watchers : coroutines started beside the loop, each given the request queue: they put a plain-words
        reason on it to have the current interval decided again (new prices, a grid peak).
    """

    def __init__(self, loop: ControlLoop, clock: Clock,
                 after_each: Callable[[Tick, Decision], Any] | None = None,
                 watchers: tuple[Callable[[asyncio.Queue[str]], Any], ...] = ()) -> None:
        self.loop = loop
        self.clock = clock
        self.after_each = after_each
        self.watchers = watchers
        self.requests: asyncio.Queue[str] = asyncio.Queue()
        self.decisions = 0
        self.early = 0

    async def run(self, until: pd.Timestamp | None = None) -> int:
        """Decide until ``until`` (UTC, exclusive; None: until cancelled). Returns the number of decisions."""
        tasks = [asyncio.ensure_future(watch(self.requests)) for watch in self.watchers]
        try:
            async for trigger in ticks(self.clock, self.loop.minutes, until, requests=self.requests):
                if trigger.early:
                    log.info("deciding %s again: %s", trigger.start.isoformat(), trigger.early)
                    self.early += 1
                applied = await self.loop.step(trigger.start, early=trigger.early)
                self.decisions += 1
                if self.after_each is not None:
                    done = self.after_each(trigger, applied)
                    if asyncio.iscoroutine(done):
                        await done
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self.decisions

