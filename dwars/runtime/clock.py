"""When the runtime decides: interval boundaries in UTC, and clocks that may run faster than real time.

Decisions fall on interval starts (quarter hours or hours) counted in UTC, so daylight-saving changes need no
special case: the local day of the last Sunday of March simply has 92 quarter hours and the last Sunday of
October 100 (see :mod:`dwars.timegrid`). A :class:`SimulatedClock` runs the same loop against the simulated
inverter at many times real speed (``make run``, the end-to-end tests); :class:`SystemClock` is the Pi's.

:func:`ticks` yields each interval start once. A loop that falls behind (a slow decision, a suspended Pi)
is not made to catch up with a burst of stale decisions: it skips to the current interval and says how many
it missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import pandas as pd

from dwars.timegrid import RESOLUTIONS_MIN

log = logging.getLogger(__name__)


def _utc(when: pd.Timestamp | datetime, field: str) -> pd.Timestamp:
    ts = pd.Timestamp(when)
    if ts.tzinfo is None:
        raise ValueError(f"{field} = {ts}: must be timezone-aware (dwars computes in UTC)")
    return ts.tz_convert("UTC")


def _check_minutes(minutes: int) -> int:
    if minutes not in RESOLUTIONS_MIN:
        raise ValueError(f"minutes = {minutes}: must be one of {', '.join(map(str, RESOLUTIONS_MIN))}")
    return int(minutes)


def interval_start(now: pd.Timestamp | datetime, minutes: int) -> pd.Timestamp:
    """Start (UTC) of the interval of ``minutes`` that contains ``now``."""
    return _utc(now, "now").floor(f"{_check_minutes(minutes)}min")


def next_boundary(now: pd.Timestamp | datetime, minutes: int) -> pd.Timestamp:
    """The first interval start (UTC) strictly after ``now``."""
    return interval_start(now, minutes) + pd.Timedelta(minutes=minutes)


class Clock(Protocol):
    """A source of the current time (UTC) that can wait until a given time."""

    def now(self) -> pd.Timestamp:
        """The current time, tz-aware UTC."""
        ...

    async def sleep_until(self, when: pd.Timestamp) -> None:
        """Return at (or just after) ``when``; at once if it has passed."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> pd.Timestamp:
        return pd.Timestamp(time.time_ns(), unit="ns", tz="UTC")

    async def sleep_until(self, when: pd.Timestamp) -> None:
        delay_s = (_utc(when, "when") - self.now()).total_seconds()
        if delay_s > 0:
            await asyncio.sleep(delay_s)


@dataclass
class SimulatedClock:
    """Simulated time that runs ``speed`` times as fast as real time from ``start``.

    ``speed`` = 3600 turns a quarter hour into a quarter of a real second. By default the simulated time is
    derived from the monotonic real clock from the moment the clock is made, so it never jumps backwards.
    ``epoch_unix_s`` pins ``start`` to a wall-clock instant (seconds since 1970) instead, so that separate
    processes (the simulated inverter, ``dwars run``, a restarted ``dwars run``) share one simulated time.
    """

    start: pd.Timestamp
    speed: float = 1.0
    epoch_unix_s: float | None = None

    def __post_init__(self) -> None:
        self.start = _utc(self.start, "start")
        if not self.speed > 0:
            raise ValueError(f"speed = {self.speed}: must be > 0")
        self._t0 = time.monotonic()

    def elapsed_real_s(self) -> float:
        """Real seconds since ``start`` was (or is to be) reached."""
        if self.epoch_unix_s is not None:
            return time.time() - self.epoch_unix_s
        return time.monotonic() - self._t0

    def now(self) -> pd.Timestamp:
        return self.start + pd.Timedelta(seconds=self.elapsed_real_s() * self.speed)

    async def sleep_until(self, when: pd.Timestamp) -> None:
        delay_s = (_utc(when, "when") - self.now()).total_seconds() / self.speed
        if delay_s > 0:
            await asyncio.sleep(delay_s)


@dataclass(frozen=True)
class Tick:
    """One decision time: the interval start (UTC), how many interval starts were skipped before it, and, for a
    decision again within an interval already decided, why (in plain words; None: the interval began)."""

    start: pd.Timestamp
    missed: int = 0
    early: str | None = None


async def ticks(clock: Clock, minutes: int, until: pd.Timestamp | None = None, first_now: bool = True,
                requests: asyncio.Queue[str] | None = None) -> AsyncIterator[Tick]:
    """Each interval start of ``minutes`` from now on, as the clock reaches it, until ``until`` (exclusive).

    ``first_now``: begin with the interval already under way (the runtime decides at start-up), else with the
    next boundary. A consumer that falls behind gets the current interval next, with ``missed`` counting the
    starts it skipped (logged once as a warning), never a burst of stale ones. ``requests``: each reason put on
    this queue between two starts yields an early tick for the interval under way (several requests before the
    consumer gets to them count as one).
    """
    _check_minutes(minutes)
    step = pd.Timedelta(minutes=minutes)
    end = _utc(until, "until") if until is not None else None
    due = interval_start(clock.now(), minutes) if first_now else next_boundary(clock.now(), minutes)
    while end is None or due < end:
        if requests is None:
            await clock.sleep_until(due)
        else:
            reasons = await _sleep_or_requests(clock, due, requests)
            if reasons:
                current = interval_start(clock.now(), minutes)
                if current < due:  # the interval under way was decided already: decide it again
                    yield Tick(current, early="; ".join(dict.fromkeys(reasons)))
                continue
        current = interval_start(clock.now(), minutes)
        missed = max(int((current - due) / step), 0)
        if missed:
            log.warning("the decision loop fell behind: skipped %d interval(s), deciding for %s", missed,
                        current.isoformat())
            due = current
            if end is not None and due >= end:
                return
        yield Tick(due, missed)
        due = due + step


async def _sleep_or_requests(clock: Clock, due: pd.Timestamp, requests: asyncio.Queue[str]) -> list[str]:
    """Wait until ``due`` or the first request; the requests that came (empty: ``due`` was reached; a request
    that comes at the same moment is dropped, the decision at ``due`` sees what it was about)."""
    waiter = asyncio.ensure_future(clock.sleep_until(due))
    getter = asyncio.ensure_future(requests.get())
    try:
        done, _ = await asyncio.wait({waiter, getter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, getter):
            if not task.done():
                task.cancel()
    if getter not in done or waiter in done:
        return []
    reasons = [getter.result()]
    while not requests.empty():
        reasons.append(requests.get_nowait())
    return reasons
