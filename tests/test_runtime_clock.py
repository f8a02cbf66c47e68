"""The runtime's clock: UTC interval boundaries through DST changes, and a loop that runs faster than real time."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import datetime

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dwars.runtime.clock import SimulatedClock, Tick, interval_start, next_boundary, ticks


@pytest.mark.parametrize(("day", "minutes", "expected"), [
    ("2024-03-31", 15, 92), ("2024-10-27", 15, 100), ("2024-06-01", 15, 96),
    ("2024-03-31", 60, 23), ("2024-10-27", 60, 25), ("2024-06-01", 60, 24),
])
def test_a_local_day_has_as_many_decisions_as_it_has_intervals(day: str, minutes: int, expected: int) -> None:
    start = pd.Timestamp(day, tz="Europe/Amsterdam")
    end = start + pd.offsets.Day(1)  # the next local midnight, 23 or 25 hours later on DST days
    t, n = start, 0
    while t < end:
        n += 1
        t = next_boundary(t, minutes)
    assert n == expected
    assert t == end  # local midnight is a boundary in UTC too (whole-hour offsets)


@given(st.datetimes(min_value=datetime(2022, 1, 1), max_value=datetime(2030, 1, 1)), st.sampled_from([15, 60]))
def test_boundaries_are_aligned_and_strictly_later(naive: datetime, minutes: int) -> None:
    now = pd.Timestamp(naive, tz="UTC")
    start, nxt = interval_start(now, minutes), next_boundary(now, minutes)
    assert start <= now < nxt
    assert nxt - start == pd.Timedelta(minutes=minutes)
    assert nxt.minute % minutes == 0 and nxt.second == 0 and nxt.microsecond == 0 and nxt.nanosecond == 0


def test_bad_times_and_resolutions_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="now = 2024-01-01 12:00:00: must be timezone-aware"):
        next_boundary(datetime(2024, 1, 1, 12), 15)
    with pytest.raises(ValueError, match="minutes = 30: must be one of 15, 60"):
        interval_start(pd.Timestamp("2024-01-01", tz="UTC"), 30)
    with pytest.raises(ValueError, match="speed = 0"):
        SimulatedClock(pd.Timestamp("2024-01-01", tz="UTC"), speed=0)


def test_a_simulated_night_of_quarter_hours_passes_in_a_second() -> None:
    """Across the October DST change: 00:07 local on 27 October for two simulated hours at 7,200x."""
    start = pd.Timestamp("2024-10-27 00:07", tz="Europe/Amsterdam")
    clock = SimulatedClock(start, speed=7200.0)

    async def collect() -> list[Tick]:
        return [tick async for tick in ticks(clock, 15, until=start + pd.Timedelta(hours=2))]

    t0 = time.monotonic()
    got = asyncio.run(collect())
    wall_s = time.monotonic() - t0
    starts = [tick.start for tick in got]
    assert starts[0] == pd.Timestamp("2024-10-26 22:00", tz="UTC")  # the interval under way at start-up
    assert starts == list(pd.date_range(starts[0], periods=len(starts), freq="15min"))
    assert len(starts) == 9 and all(tick.missed == 0 for tick in got)
    assert wall_s < 3.0  # two simulated hours: about one real second


def test_a_loop_that_falls_behind_skips_to_the_current_interval(caplog: pytest.LogCaptureFixture) -> None:
    start = pd.Timestamp("2024-03-31 01:00", tz="Europe/Amsterdam")  # the spring-forward night
    clock = SimulatedClock(start, speed=7200.0)

    async def slow_consumer() -> list[Tick]:
        out = []
        async for tick in ticks(clock, 15, until=start + pd.Timedelta(hours=3)):
            out.append(tick)
            if len(out) == 2:
                await asyncio.sleep(0.3)  # 36 simulated minutes: boundaries pass meanwhile
        return out

    with caplog.at_level(logging.WARNING, logger="dwars.runtime.clock"):
        got = asyncio.run(slow_consumer())
    late = next(tick for tick in got if tick.missed)
    assert late.missed >= 1  # 00:30 UTC at least: the loop was busy until about 00:51
    assert late.start == got[1].start + pd.Timedelta(minutes=15) * (late.missed + 1)
    assert all(b.start > a.start for a, b in itertools.pairwise(got))  # never a stale decision
    assert "fell behind" in caplog.text


def test_clocks_pinned_to_one_epoch_agree_across_instances() -> None:
    """Two processes (here: two clocks made at different moments) with the same epoch share simulated time."""
    import time

    start = pd.Timestamp("2024-03-31 00:00", tz="Europe/Amsterdam")
    epoch = time.time() - 2.0  # the shared start was reached two real seconds ago
    first = SimulatedClock(start, speed=900, epoch_unix_s=epoch)
    time.sleep(0.05)
    second = SimulatedClock(start, speed=900, epoch_unix_s=epoch)
    gap_s = abs((first.now() - second.now()).total_seconds())
    assert gap_s < 900 * 0.02  # both read the same simulated time (within 20 ms of real time)
    assert first.now() >= start.tz_convert("UTC") + pd.Timedelta(minutes=29)  # 2 s x 900 = 30 simulated minutes
    unpinned = SimulatedClock(start, speed=900)
    assert unpinned.now() < start.tz_convert("UTC") + pd.Timedelta(minutes=5)  # starts from its own creation
