"""Goal deadlines: the endpoint at the local clock hour and the night end before sunrise, DST-proof."""

from __future__ import annotations

import pandas as pd

from dwars.config import Installation
from dwars.env.goals import deadlines, endpoint_times, night_end_times

TZ = "Europe/Amsterdam"


def span(first_day: str, days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(first_day, tz=TZ).tz_convert("UTC")
    end = (pd.Timestamp(first_day) + pd.Timedelta(days=days)).tz_localize(TZ).tz_convert("UTC")
    return start, end


def test_endpoint_is_at_the_local_hour_across_dst() -> None:
    for first in ("2024-03-30", "2024-10-26"):
        start, end = span(first, 3)
        times = endpoint_times(start, end, 17, TZ)
        assert len(times) == 3
        assert all(t.tz_convert(TZ).hour == 17 and t.minute == 0 for t in times)
        # UTC hour differs by one across the change: the instant follows the clock, not UTC.
        assert len({t.hour for t in times}) == 2


def test_night_end_is_before_sunrise_on_the_grid() -> None:
    start, end = span("2024-06-20", 2)
    times = night_end_times(start, end, 52.1, 5.18, 60, 15, TZ)
    assert len(times) == 2
    for t in times:
        local = t.tz_convert(TZ)
        assert local.minute % 15 == 0
        # Sunrise in De Bilt around midsummer is about 05:20 local: night end about 04:15.
        assert 4 <= local.hour <= 4 or (local.hour == 3 and local.minute >= 45)
    winter = night_end_times(*span("2024-12-20", 1), 52.1, 5.18, 60, 60, TZ)
    assert winter[0].tz_convert(TZ).hour == 7  # sunrise about 08:45


def test_deadlines_in_order_and_disabled_goals_skipped() -> None:
    inst = Installation()
    start, end = span("2024-05-01", 2)
    got = deadlines(inst, start, end, 15)
    assert [d.kind for d in got] == ["night_end", "endpoint", "night_end", "endpoint"]
    assert got[1].soc_pct == 90
    from dwars.config import GoalsConfig

    off = inst.replace(goals=GoalsConfig(endpoint_hour=None, night_end_soc_pct=None))
    assert deadlines(off, start, end, 15) == []
