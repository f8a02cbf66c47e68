"""Forecasts: known prices DST-correct, load from the home's own history, PV errors realistic and seeded, no leaks."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dwars.config import load_config
from dwars.data.io import sample_path
from dwars.data.scenario import Scenario, build_scenario
from dwars.env.forecast import (
    MAX_HORIZON_H,
    Forecaster,
    PvErrorModel,
    clearsky_pv_kw,
    price_known_until,
    pv_skill_by_lead,
)
from dwars.env.load import profile_load_kw
from dwars.policy.base import Home
from dwars.timegrid import local_days_index

ROOT = Path(__file__).resolve().parents[1]
INST = load_config(ROOT / "examples" / "home.toml")
HOME = Home.from_installation(INST)
PRICES_2024 = [sample_path("prices_2024.json.gz")]
WEATHER_2024 = sample_path("knmi_debilt_260_2024_T_Q.csv.gz")
TZ = "Europe/Amsterdam"


def local(text: str) -> pd.Timestamp:
    """A local wall-clock time as a UTC instant (summer time where the clock is ambiguous)."""
    return pd.Timestamp(text).tz_localize(TZ, ambiguous=True).tz_convert("UTC")


def position(scn: Scenario | Forecaster, when: pd.Timestamp) -> int:
    times = scn.times if isinstance(scn, Forecaster) else scn.index
    return int(times.get_loc(when))


@pytest.fixture(scope="module")
def year() -> Scenario:
    return build_scenario(INST, PRICES_2024, "2024-01-01", "2025-01-01", 15, weather=WEATHER_2024)


@pytest.fixture(scope="module")
def weather_fc(year: Scenario) -> Forecaster:
    return Forecaster(year, HOME, seed=7)


@pytest.fixture(scope="module")
def autumn() -> Scenario:
    return build_scenario(INST, PRICES_2024, "2024-10-24", "2024-10-30", 15, weather=WEATHER_2024)


def synthetic(start: str, end: str, seed: int = 0, minutes: int = 15) -> Scenario:
    """A scenario with random load, prices and measured PV (load differs every interval, so a wrong
    source interval cannot give the right mean by accident)."""
    index = local_days_index(start, end, minutes, TZ)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "price_eur_per_mwh": rng.normal(80, 40, len(index)),
        "load_kw": rng.uniform(0.1, 3.0, len(index)),
        "pv_kw": rng.uniform(0.0, 1.0, len(index)) * (index.tz_convert(TZ).hour.isin(range(9, 17))),
    }, index=index)
    return Scenario(frame, minutes)


def perturbed(scn: Scenario, i: int, columns: tuple[str, ...]) -> Scenario:
    """The same scenario with the actuals of ``columns`` from interval ``i`` on changed beyond recognition."""
    frame = scn.frame.copy()
    for col in columns:
        values = frame[col].to_numpy().copy()
        values[i:] = values[i:] * 3.0 + 1.0
        frame[col] = values
    return Scenario(frame, scn.minutes, scn.meta)


# -------------------------------------------------------------------------------------------- prices


@pytest.mark.parametrize(("now_local", "until_utc"), [
    # An ordinary summer day: at 12:45 only until midnight, from 13:00 until the end of tomorrow.
    ("2024-06-12 12:45", "2024-06-12 22:00"),
    ("2024-06-12 13:00", "2024-06-13 22:00"),
    ("2024-06-12 00:00", "2024-06-12 22:00"),
    ("2024-06-12 23:45", "2024-06-13 22:00"),
    # Winter: local midnight is 23:00 UTC.
    ("2024-01-15 12:59", "2024-01-15 23:00"),
    ("2024-01-15 13:00", "2024-01-16 23:00"),
    # Day before the spring DST day: tomorrow has 23 hours, 11 h + 23 h = 34 h ahead.
    ("2024-03-30 13:00", "2024-03-31 22:00"),
    # Day before the autumn DST day: tomorrow has 25 hours, 11 h + 25 h = 36 h ahead.
    ("2024-10-26 12:45", "2024-10-26 22:00"),
    ("2024-10-26 13:00", "2024-10-27 23:00"),
    # On the autumn day itself, in its second 02:00 hour (winter time).
    ("2024-10-27 09:00", "2024-10-27 23:00"),
])
def test_price_known_until(now_local: str, until_utc: str) -> None:
    got = price_known_until(local(now_local))
    assert got == pd.Timestamp(until_utc, tz="UTC")


def test_price_known_until_is_vectorised_and_dst_exact() -> None:
    nows = pd.date_range("2024-10-26 10:00", "2024-10-27 23:00", freq="15min", tz="UTC")
    ends = price_known_until(nows)
    assert isinstance(ends, pd.DatetimeIndex) and len(ends) == len(nows)
    assert all(ends[k] == price_known_until(t) for k, t in enumerate(nows))
    ahead_h = (ends - nows) / pd.Timedelta(hours=1)
    assert ahead_h.max() == 36.0  # 13:00 local on Saturday: 11 h of today plus the 25-hour Sunday
    assert (ends > nows).all()
    assert (ends.tz_convert(TZ).hour == 0).all() and (ends.tz_convert(TZ).minute == 0).all()
    assert (price_known_until(nows, publish_hour_local=0) - nows).min() > pd.Timedelta(hours=23)
    with pytest.raises(ValueError):
        price_known_until(pd.Timestamp("2024-06-12 13:00"))
    with pytest.raises(ValueError):
        price_known_until(nows, publish_hour_local=24)


def test_known_prices_in_forecasts_across_autumn_dst(autumn: Scenario) -> None:
    fc = Forecaster(autumn, HOME, pv_mode="perfect")
    assert fc.horizon == 144
    i13 = position(autumn, local("2024-10-26 13:00"))
    f = fc.at(i13)
    assert f.n_price_known == 144 == f.horizon  # 36 h of known prices fill the 36 h horizon exactly
    assert f.times[0] == local("2024-10-26 13:00")
    np.testing.assert_array_equal(f.epex_eur_per_mwh, autumn.frame["price_eur_per_mwh"].to_numpy()[i13:i13 + 144])
    np.testing.assert_allclose(
        f.import_price_eur_per_kwh,
        HOME.tariff.import_price(f.epex_eur_per_mwh, f.times[:f.n_price_known]))
    np.testing.assert_allclose(
        f.export_price_eur_per_kwh,
        HOME.tariff.export_price(f.epex_eur_per_mwh, f.times[:f.n_price_known]))
    # One quarter earlier only today's prices: until 22:00 UTC, 11.25 h.
    assert fc.at(i13 - 1).n_price_known == 45
    # A shorter horizon caps K.
    assert Forecaster(autumn, HOME, pv_mode="perfect", horizon_h=24).at(i13).n_price_known == 96
    # Per interval: K is what price_known_until says, never beyond the scenario nor the horizon.
    until = price_known_until(fc.times)
    want_end = np.searchsorted(fc.times.asi8, until.asi8)
    np.testing.assert_array_equal(fc.price_known_end_index, want_end)
    assert (fc.price_known_end_index <= fc.n).all() and (fc.price_known_end_index > np.arange(fc.n)).all()
    for i in range(fc.n):
        f = fc.at(i)
        assert f.n_price_known == min(want_end[i], i + 144, fc.n) - i == fc.n_price_known(i)


def test_near_the_end_everything_truncates(autumn: Scenario) -> None:
    fc = Forecaster(autumn, HOME, pv_mode="clearsky_index")
    i = position(autumn, local("2024-10-29 13:00"))  # known until 31 Oct; the scenario ends 30 Oct 00:00
    f = fc.at(i)
    assert f.horizon == fc.n - i == 44
    assert len(f.pv_kw) == len(f.load_kw) == 44 and f.n_price_known == 44
    last = fc.at(fc.n - 1)
    assert last.horizon == 1 and last.n_price_known == 1 and len(last.pv_kw) == 1
    with pytest.raises(IndexError):
        fc.at(fc.n)
    with pytest.raises(IndexError):
        fc.at(-1)


# -------------------------------------------------------------------------------------------- shape


def test_forecasts_have_the_documented_lengths_and_deadlines(autumn: Scenario) -> None:
    fc = Forecaster(autumn, HOME, horizon_h=30)
    step = pd.Timedelta(minutes=15)
    assert fc.horizon == 120
    for i in range(0, fc.n, 7):
        f = fc.at(i)
        h = min(120, fc.n - i)
        assert f.horizon == len(f.pv_kw) == len(f.load_kw) == h
        assert len(f.epex_eur_per_mwh) == len(f.import_price_eur_per_kwh) == len(f.export_price_eur_per_kwh)
        assert f.n_price_known <= h
        assert f.times.equals(fc.times[i:i + h])
        want = [d for d in fc.deadlines if f.times[0] < d.time <= f.times[0] + h * step]
        assert list(f.deadlines) == want
        assert len(f.deadline_steps(15)) == len(want)
    # The Saturday 13:00 forecast sees Sunday's 17:00 endpoint and night end, not Monday's.
    kinds = [d.kind for d in fc.at(position(autumn, local("2024-10-26 13:00"))).deadlines]
    assert kinds == ["endpoint", "night_end", "endpoint"]
    f = fc.at(10)
    assert not f.pv_kw.flags.writeable and not f.load_kw.flags.writeable
    assert not f.import_price_eur_per_kwh.flags.writeable


def test_hourly_scenario() -> None:
    scn = build_scenario(INST, PRICES_2024, "2024-10-24", "2024-10-30", 60, weather=WEATHER_2024)
    fc = Forecaster(scn, HOME)
    assert fc.horizon == 36
    assert fc.at(position(scn, local("2024-10-26 13:00"))).n_price_known == 36
    assert fc.at(position(scn, local("2024-10-26 12:00"))).n_price_known == 12


def test_bad_options_are_refused(autumn: Scenario) -> None:
    with pytest.raises(ValueError, match="pv_mode"):
        Forecaster(autumn, HOME, pv_mode="crystal_ball")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="load_mode"):
        Forecaster(autumn, HOME, load_mode="guess")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="horizon_h"):
        Forecaster(autumn, HOME, horizon_h=MAX_HORIZON_H + 1)
    fc = Forecaster(autumn, HOME, pv_mode="perfect")
    with pytest.raises(ValueError):
        fc.pv_forecast(0, fc.horizon + 1)


def test_batch_lookups_match_at(autumn: Scenario) -> None:
    for mode in ("weather", "clearsky_index", "perfect"):
        fc = Forecaster(autumn, HOME, pv_mode=mode, seed=3)  # type: ignore[arg-type]
        issues = np.array([0, 100, fc.n - 50, fc.n - 1])
        pv = fc.pv_forecast_batch(issues[:, None], np.arange(fc.horizon)[None, :])
        load = fc.load_forecast_batch(issues[:, None], np.arange(fc.horizon)[None, :])
        assert pv.shape == load.shape == (4, fc.horizon)
        for row, i in enumerate(issues):
            f = fc.at(int(i))
            np.testing.assert_array_equal(pv[row, :f.horizon], f.pv_kw)
            np.testing.assert_array_equal(load[row, :f.horizon], f.load_kw)
            np.testing.assert_array_equal(fc.pv_forecast(int(i), 5), f.pv_kw[:5])
            assert np.isnan(pv[row, f.horizon:]).all() and np.isnan(load[row, f.horizon:]).all()
        assert np.isnan(fc.pv_forecast_batch(0, fc.horizon))


# -------------------------------------------------------------------------------------------- load


def test_load_forecast_is_the_mean_of_four_previous_same_weekdays() -> None:
    scn = synthetic("2024-05-01", "2024-06-20")
    fc = Forecaster(scn, HOME, pv_mode="perfect")
    load = scn.frame["load_kw"]
    for when in ("2024-06-03 08:15", "2024-06-08 19:45", "2024-06-18 00:00"):
        i = position(fc, local(when))
        f = fc.at(i)
        for h in (0, 1, 37, 143):
            t = f.times[h]
            want = np.mean([load[t - pd.Timedelta(days=7 * w)] for w in range(1, 5)])
            assert f.load_kw[h] == pytest.approx(want, rel=1e-12)


def test_load_forecast_follows_the_local_clock_across_dst() -> None:
    scn = synthetic("2024-03-01", "2024-04-20", seed=1)
    fc = Forecaster(scn, HOME, pv_mode="perfect")
    by_local = pd.Series(scn.frame["load_kw"].to_numpy(), index=scn.index.tz_convert(TZ).tz_localize(None))
    for when in ("2024-04-08 08:00", "2024-04-01 12:30", "2024-04-15 23:45"):
        target = pd.Timestamp(when)
        got = fc.load_forecast_kw[position(fc, local(when))]
        want = np.mean([by_local[target - pd.Timedelta(days=7 * w)] for w in range(1, 5)])
        assert got == pytest.approx(want, rel=1e-12)
    # 2024-04-07 02:30 local: one week earlier (the spring DST day) that clock time did not exist; the
    # missing week is filled by the standard profile.
    t = pd.Timestamp("2024-04-07 02:30")
    i = position(fc, local(str(t)))
    profile = profile_load_kw(fc.times[i:i + 1], INST.load.annual_kwh, tz=TZ, minutes=15).iloc[0]
    weeks = [by_local[t - pd.Timedelta(days=7 * w)] for w in (2, 3, 4)]
    assert fc.load_forecast_kw[i] == pytest.approx((sum(weeks) + profile) / 4, rel=1e-12)


def test_load_forecast_without_history_is_the_profile() -> None:
    scn = synthetic("2024-05-01", "2024-05-20")
    fc = Forecaster(scn, HOME, pv_mode="perfect")
    profile = profile_load_kw(fc.times, INST.load.annual_kwh, tz=TZ, minutes=15).to_numpy()
    first_week = slice(0, 7 * 96)
    np.testing.assert_allclose(fc.load_forecast_kw[first_week], profile[first_week], rtol=1e-12)
    # Second week: one week of history, three of profile.
    i = 10 * 96
    want = (scn.frame["load_kw"].to_numpy()[i - 7 * 96] + 3 * profile[i]) / 4
    assert fc.load_forecast_kw[i] == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(Forecaster(scn, HOME, pv_mode="perfect", load_mode="profile").load_forecast_kw,
                               profile, rtol=1e-12)
    np.testing.assert_array_equal(Forecaster(scn, HOME, load_mode="perfect").load_forecast_kw,
                                  scn.frame["load_kw"].to_numpy())


@pytest.mark.parametrize("when", ["2024-06-10 13:00", "2024-06-14 06:15", "2024-06-01 00:00"])
def test_forecasts_do_not_read_actuals_at_or_after_now(when: str) -> None:
    scn = synthetic("2024-05-01", "2024-06-20", seed=2)
    i = position(scn, local(when))
    other = perturbed(scn, i, ("load_kw", "pv_kw"))
    for load_mode in ("history", "profile"):
        a = Forecaster(scn, HOME, pv_mode="clearsky_index", load_mode=load_mode).at(i)  # type: ignore[arg-type]
        b = Forecaster(other, HOME, pv_mode="clearsky_index", load_mode=load_mode).at(i)  # type: ignore[arg-type]
        np.testing.assert_array_equal(a.load_kw, b.load_kw)
        np.testing.assert_array_equal(a.pv_kw, b.pv_kw)
    # Perturbing the load and the prices beyond the known ones leaves the weather-mode PV unchanged too.
    known = Forecaster(scn, HOME).price_known_end_index[i]
    other = perturbed(perturbed(scn, i, ("load_kw",)), int(known), ("price_eur_per_mwh",))
    a, b = Forecaster(scn, HOME, seed=4).at(i), Forecaster(other, HOME, seed=4).at(i)
    for field in ("pv_kw", "load_kw", "epex_eur_per_mwh", "import_price_eur_per_kwh", "export_price_eur_per_kwh"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    # The perfect modes do see the change: the test above can fail.
    a = Forecaster(scn, HOME, pv_mode="perfect", load_mode="perfect").at(i)
    c = Forecaster(perturbed(scn, i, ("load_kw", "pv_kw")), HOME, pv_mode="perfect", load_mode="perfect").at(i)
    assert not np.array_equal(a.load_kw, c.load_kw)


def test_clearsky_index_forecast_for_a_home_without_pv_config() -> None:
    inst = load_config(ROOT / "examples" / "measured_pv.toml")
    home = Home.from_installation(inst)
    scn = synthetic("2024-05-01", "2024-05-15", seed=5)
    i = position(scn, local("2024-05-10 11:00"))
    a = Forecaster(scn, home, pv_mode="clearsky_index").at(i)
    b = Forecaster(perturbed(scn, i, ("pv_kw", "load_kw")), home, pv_mode="clearsky_index").at(i)
    np.testing.assert_array_equal(a.pv_kw, b.pv_kw)
    assert (a.pv_kw >= 0).all() and a.pv_kw.max() > 0
    # Weather mode: the envelope is sized from the measured PV, and bounds the forecast.
    w = Forecaster(scn, home, seed=1)
    env = np.asarray(w.pv_clearsky_kw)
    assert env.max() > 0
    f = w.at(i).pv_kw
    assert (f >= 0).all() and (f <= env[i:i + len(f)] + 1e-12).all()


# -------------------------------------------------------------------------------------------- PV


def test_weather_pv_forecast_stays_between_zero_and_clear_sky(weather_fc: Forecaster, year: Scenario) -> None:
    env = clearsky_pv_kw(year.index, INST, 15)
    np.testing.assert_allclose(weather_fc.pv_clearsky_kw, env)
    rng = np.random.default_rng(0)
    for i in rng.integers(0, weather_fc.n, 300):
        f = weather_fc.at(int(i))
        assert (f.pv_kw >= 0).all()
        assert (f.pv_kw <= env[i:i + f.horizon]).all()
        assert (f.pv_kw[env[i:i + f.horizon] == 0] == 0).all()  # nothing at night


def test_pv_error_grows_with_lead_time_as_calibrated(weather_fc: Forecaster) -> None:
    skill = pv_skill_by_lead(weather_fc)
    nrmse = [s["nrmse_pct"] for s in skill]
    assert all(b > a for a, b in pairwise(nrmse)), nrmse
    by_bucket = {(s["lead_from_h"], s["lead_to_h"]): s for s in skill}
    # The documented calibration (docs/forecasts.md), with room for another seed.
    assert 3.0 <= by_bucket[(0.0, 0.25)]["nrmse_pct"] <= 8.0  # nowcast: a few %
    assert 10.0 <= by_bucket[(1.0, 4.0)]["nrmse_pct"] <= 20.0  # intraday 1-4 h
    assert 25.0 <= by_bucket[(12.0, 24.0)]["nrmse_pct"] <= 40.0  # day-ahead
    assert 25.0 <= by_bucket[(24.0, 36.0)]["nrmse_pct"] <= 40.0
    assert all(abs(s["bias_pct"]) < 2.0 for s in skill)


def test_pv_errors_are_correlated_along_the_horizon_and_between_issues(weather_fc: Forecaster) -> None:
    n, h = weather_fc.n, weather_fc.horizon
    issues = np.arange(0, n - h - 1)
    leads = np.arange(h)
    fc = weather_fc.pv_forecast_batch(issues[:, None], leads[None, :])
    nxt = weather_fc.pv_forecast_batch(issues[:, None] + 1, leads[None, :] - 1)  # same targets, one later
    actual = np.asarray(weather_fc.pv_actual_kw)[issues[:, None] + leads[None, :]]
    day = np.asarray(weather_fc.pv_clearsky_kw)[issues[:, None] + leads[None, :]] > 0.5
    err, err_next = fc - actual, nxt - actual
    for lead in (8, 48, 96):  # 2 h, 12 h, 24 h
        sel = day[:, lead]
        # A forecast issued a quarter later for the same target is almost the same one.
        assert np.corrcoef(err[sel, lead], err_next[sel, lead])[0, 1] > 0.85
        assert np.std(err_next[sel, lead] - err[sel, lead]) < 0.5 * np.std(err[sel, lead])
        # Along the horizon, errors one hour apart are correlated (clouds last longer than a quarter).
        both = sel & day[:, lead + 4]
        assert np.corrcoef(err[both, lead], err[both, lead + 4])[0, 1] > 0.4


def test_pv_error_model_std_matches_sigma() -> None:
    model = PvErrorModel()
    lead_h = (np.arange(144) + 1) * 0.25
    var = np.mean([(model.errors(20_000, 144, 15, seed) ** 2).mean(axis=0) for seed in range(4)], axis=0)
    ratio = var / model.sigma(lead_h) ** 2
    assert np.all(np.abs(ratio - 1) < 0.08), ratio[[0, 15, 47, 95, 143]]
    assert np.all(np.diff(model.sigma(lead_h)) > 0)


def test_pv_forecast_is_seeded(autumn: Scenario) -> None:
    a = Forecaster(autumn, HOME, seed=11)
    b = Forecaster(autumn, HOME, seed=11)
    c = Forecaster(autumn, HOME, seed=12)
    i = position(autumn, local("2024-10-26 09:00"))
    np.testing.assert_array_equal(a.at(i).pv_kw, b.at(i).pv_kw)
    assert not np.array_equal(a.at(i).pv_kw, c.at(i).pv_kw)
    # Another error model changes it as well.
    d = Forecaster(autumn, HOME, seed=11, pv_error=replace(PvErrorModel(), sigma_day_ahead=0.3))
    assert not np.array_equal(a.at(i).pv_kw, d.at(i).pv_kw)


def test_perfect_mode_returns_actuals(autumn: Scenario) -> None:
    fc = Forecaster(autumn, HOME, pv_mode="perfect", load_mode="perfect")
    pv = autumn.pv_kw(INST).to_numpy()
    load = autumn.frame["load_kw"].to_numpy()
    for i in (0, 200, fc.n - 10):
        f = fc.at(i)
        np.testing.assert_array_equal(f.pv_kw, pv[i:i + f.horizon])
        np.testing.assert_array_equal(f.load_kw, load[i:i + f.horizon])


def test_clearsky_index_fallback_is_bounded_and_worse_than_weather(year: Scenario, weather_fc: Forecaster) -> None:
    fc = Forecaster(year, HOME, pv_mode="clearsky_index")
    env = np.asarray(fc.pv_clearsky_kw)
    for i in range(0, fc.n, 997):
        f = fc.at(i).pv_kw
        assert (f >= 0).all() and (f <= env[i:i + len(f)] + 1e-12).all()
    fallback = {s["lead_to_h"]: s["nrmse_pct"] for s in pv_skill_by_lead(fc)}
    weather = {s["lead_to_h"]: s["nrmse_pct"] for s in pv_skill_by_lead(weather_fc)}
    assert all(fallback[k] > weather[k] for k in weather)
    assert fallback[36.0] < 100.0  # still better than nothing: about the climatological error
