"""The decision log: schema-1 records, durable appends, rotation, crash tolerance, and ``dwars log``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dwars.cli import main
from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.modes import Decision, Mode
from dwars.errors import DataError
from dwars.policy.base import Home, State
from dwars.policy.decision_log import (
    RULE_IDS,
    DecisionLog,
    decision_record,
    encode_record,
    inputs_digest,
    log_files,
    read_records,
    shield_summary,
)

TZ = "Europe/Amsterdam"
DIGEST = "0123456789abcdef"


def _note(rule: str, **numbers: Any) -> dict[str, Any]:
    return {"rule": rule, "reason_en": f"{rule} blocked it", "reason_nl": f"{rule} hield het tegen",
            "numbers": numbers}


def _record(time: str | pd.Timestamp, i: int = 0, notes: list[dict[str, Any]] | None = None,
            controller: str = "rule") -> dict[str, Any]:
    proposed = Decision(Mode.EXPORT, 3.0, f"verkopen {i}")
    applied = Decision(Mode.MSC, 0.0, f"zelfverbruik {i}") if notes else proposed
    ts = pd.Timestamp(time)
    return decision_record(ts if ts.tz else ts.tz_localize("UTC"), TZ, controller, 40.0 + i % 50, proposed, applied,
                           notes or [], inputs_digest(i))


def _hourly(start: str, n: int) -> list[dict[str, Any]]:
    return [_record(t, i) for i, t in enumerate(pd.date_range(start, periods=n, freq="h", tz="UTC"))]


# ---------------------------------------------------------------------------------------------- records


def test_record_has_the_schema_1_fields() -> None:
    note = {**_note("spread", export_price=np.float64(0.21), buy_back=float("nan")), "time": "kept", "extra": (1, 2)}
    r = decision_record(pd.Timestamp("2024-03-29 11:00", tz="UTC"), TZ, "rule", 55.2,
                        Decision(Mode.EXPORT, 3.0, "dure kwartier"), Decision(Mode.MSC, 0.0, "spread te klein"),
                        [note], DIGEST)
    assert list(r) == ["schema", "time", "local_time", "controller", "soc_pct", "inputs_digest", "proposed",
                       "applied", "interventions", "reason"]
    assert r["schema"] == 1 and r["time"] == "2024-03-29T11:00:00+00:00"
    assert r["local_time"] == "2024-03-29T12:00:00+01:00"
    assert r["proposed"] == {"mode": "export", "power_kw": 3.0, "curtail_pv": False, "reason": "dure kwartier"}
    assert r["applied"] == {"mode": "msc", "power_kw": 0.0, "curtail_pv": False, "reason": "spread te klein"}
    assert r["reason"] == "spread te klein"
    n = r["interventions"][0]
    assert n["numbers"] == {"export_price": 0.21, "buy_back": None} and type(n["numbers"]["export_price"]) is float
    assert n["time"] == "kept" and n["extra"] == [1, 2]
    assert json.loads(encode_record(r)) == r


def test_mode_names_are_lower_case() -> None:
    for mode in Mode:
        r = decision_record(pd.Timestamp("2024-06-01 10:00", tz="UTC"), TZ, "rl", 50.0, Decision(mode, 1.0),
                            Decision(mode, 1.0), [], DIGEST)
        assert r["applied"]["mode"] == mode.name.lower() in ("msc", "hold", "import", "export")


def test_unknown_soc_is_null() -> None:
    r = decision_record(pd.Timestamp("2024-06-01 10:00", tz="UTC"), TZ, "rule", float("nan"),
                        Decision(Mode.MSC), Decision(Mode.MSC), [_note("stale_input")], DIGEST)
    assert r["soc_pct"] is None


@pytest.mark.parametrize("change, message", [
    ({"time_utc": pd.Timestamp("2024-06-01 10:00")}, "no time zone"),
    ({"interventions": [_note("reserv")]}, "not a rule id"),
    ({"interventions": [{"rule": "spread", "reason_en": "x"}]}, "lacks reason_nl, numbers"),
    ({"inputs_digest": "xyz"}, "16 lower-case hex"),
])
def test_decision_record_refuses_bad_input(change: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = dict(time_utc=pd.Timestamp("2024-06-01 10:00", tz="UTC"), tz=TZ, controller="rule",
                                  soc_pct=50.0, proposed=Decision(Mode.MSC), applied=Decision(Mode.MSC),
                                  interventions=[], inputs_digest=DIGEST)
    with pytest.raises(ValueError, match=message):
        decision_record(**{**kwargs, **change})


def test_dst_days_round_trip_with_local_offsets(tmp_path: Path) -> None:
    # Spring: 01:00+01:00 is followed by 03:00+02:00. Autumn: 02:00 comes twice, +02:00 then +01:00.
    spring = pd.date_range("2024-03-31 00:00", periods=3, freq="h", tz="UTC")
    autumn = pd.date_range("2024-10-27 00:00", periods=4, freq="h", tz="UTC")
    records = [_record(t, i) for i, t in enumerate([*spring, *autumn])]
    assert [r["local_time"] for r in records] == [
        "2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00", "2024-03-31T04:00:00+02:00",
        "2024-10-27T02:00:00+02:00", "2024-10-27T02:00:00+01:00", "2024-10-27T03:00:00+01:00",
        "2024-10-27T04:00:00+01:00"]
    with DecisionLog(tmp_path / "d.jsonl") as log:
        for r in records:
            log.write(r)
    back = read_records(tmp_path / "d.jsonl")
    assert back == records
    for r in back:  # the local time is the same instant as the UTC time
        assert pd.Timestamp(r["local_time"]) == pd.Timestamp(r["time"])


# ---------------------------------------------------------------------------------------------- digest


def test_inputs_digest_is_stable_and_sensitive() -> None:
    d = inputs_digest(np.array([0.1, 0.2, np.nan]), "rule", pd.Timestamp("2024-03-29 11:00", tz="UTC"))
    assert len(d) == 16 and int(d, 16) >= 0
    assert inputs_digest([1.0, 2.5], "x") == inputs_digest(np.array([1.0, 2.5]), "x")
    assert inputs_digest(np.array([1, 2], dtype=np.int8)) == inputs_digest([1, 2]) == inputs_digest((1.0, 2.0))
    assert inputs_digest(-0.0) == inputs_digest(0.0)
    assert inputs_digest(pd.Timestamp("2024-03-29 12:00", tz=TZ)) == inputs_digest(
        pd.Timestamp("2024-03-29 11:00", tz="UTC"))
    assert inputs_digest("ab", "c") != inputs_digest("a", "bc")
    assert inputs_digest([0.1, 0.2]) != inputs_digest([0.1, 0.2000001])
    assert inputs_digest({"a": 1, "b": 2}) == inputs_digest({"b": 2, "a": 1})
    with pytest.raises(TypeError, match="cannot digest a object"):
        inputs_digest(object())


def test_inputs_digest_golden_value() -> None:
    """Pinned: if this changes, old logs' digests no longer match the same inputs (bump the digest tag)."""
    def chunk(tag: bytes, payload: bytes) -> bytes:  # type tag, little-endian u64 length, payload
        return tag + struct.pack("<Q", len(payload)) + payload

    numbers = struct.pack("<QQ2d", 1, 2, 1.0, 2.0)  # ndim, shape, float64 values
    layout = (b"dwars-inputs-1" + chunk(b"L", struct.pack("<Q", 3)) + chunk(b"A", numbers) + chunk(b"S", b"rule")
              + chunk(b"N", b""))
    assert inputs_digest([1.0, 2.0], "rule", None) == hashlib.sha256(layout).hexdigest()[:16] == "3d2cd1bf2c0fb923"
    assert inputs_digest((1, 2), "rule", None) == "3d2cd1bf2c0fb923"


def test_inputs_digest_of_state_and_forecasts(week_60: Scenario, home_inst: Installation) -> None:
    from dwars.env.forecast import Forecaster

    home = Home.from_installation(home_inst)
    fc = Forecaster(week_60, home, seed=0)
    state = State(week_60.index[5], 60, 5.0, 50.0)
    a = inputs_digest(state, fc.at(5))
    assert a == inputs_digest(state, Forecaster(week_60, home, seed=0).at(5))
    assert a != inputs_digest(state, fc.at(6))
    assert a != inputs_digest(State(week_60.index[5], 60, 5.1, 51.0), fc.at(5))


# ---------------------------------------------------------------------------------------------- writer


def test_fsync_per_record_second_handle_sees_each_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path)
    reader = open(path, "rb")  # noqa: SIM115 - a second handle kept open alongside the writer
    try:
        for i, r in enumerate(_hourly("2024-06-01", 5), start=1):
            before = len(calls)
            log.write(r)
            assert len(calls) == before + 1  # fsync of the log's descriptor, once per record
            reader.seek(0)
            lines = reader.read().splitlines()
            assert len(lines) == i and json.loads(lines[-1]) == r
    finally:
        reader.close()
        log.close()


def test_fsync_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    with DecisionLog(tmp_path / "d.jsonl", fsync=False) as log:
        for r in _hourly("2024-06-01", 5):
            log.write(r)
        assert calls == []
        assert len((tmp_path / "d.jsonl").read_bytes().splitlines()) == 5  # still written through, unbuffered


def test_rotation_keeps_every_record_once_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    records = _hourly("2024-06-01", 200)
    size = len(encode_record(records[0]))
    max_bytes = 10 * size + size // 2  # ten records per file
    with DecisionLog(path, max_bytes=max_bytes, backups=100) as log:
        for r in records:
            log.write(r)
    files = log_files(path)
    assert len(files) == 20 and files[-1] == path and files[0].name == "d.jsonl.19"
    for f in files:
        data = f.read_bytes()
        assert 0 < len(data) <= max_bytes and data.endswith(b"\n")
    # file order alone (oldest first, line by line) is write order: nothing lost, nothing twice
    by_file = [json.loads(line) for f in files for line in f.read_bytes().splitlines()]
    assert by_file == records
    assert read_records(path) == records
    assert read_records(path, include_rotated=False) == records[-len(path.read_bytes().splitlines()):]


def test_rotation_drops_only_the_oldest_files(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    records = _hourly("2024-06-01", 100)
    size = len(encode_record(records[0]))
    with DecisionLog(path, max_bytes=10 * size, backups=3) as log:
        for r in records:
            log.write(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "d.jsonl.1", "d.jsonl.2", "d.jsonl.3"]
    back = read_records(path)
    assert back == records[-len(back):] and len(back) >= 36  # a contiguous tail: 4 files of 9 or 10 records
    assert back[0] == json.loads((tmp_path / "d.jsonl.3").read_bytes().splitlines()[0])


def test_a_record_larger_than_max_bytes_is_never_split(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    big = _record("2024-06-01 01:00", 1, [_note("spread", text="x" * 500)])
    small = _record("2024-06-01 00:00", 0)
    with DecisionLog(path, max_bytes=300, backups=5) as log:
        log.write(small)
        log.write(big)
        log.write(small | {"time": "2024-06-01T02:00:00+00:00"})
    assert [len(f.read_bytes().splitlines()) for f in log_files(path)] == [1, 1, 1]
    assert read_records(path)[1] == big


def test_no_rotation_with_zero_backups(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, max_bytes=100, backups=0) as log:
        for r in _hourly("2024-06-01", 5):
            log.write(r)
    assert log_files(path) == [path] and len(read_records(path)) == 5


def test_reopen_after_restart_appends(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    records = _hourly("2024-06-01", 30)
    size = len(encode_record(records[0]))
    for part in (records[:7], records[7:19], records[19:]):  # three "runs" of the runtime
        log = DecisionLog(path, max_bytes=5 * size, backups=10)
        for r in part:
            log.write(r)
        log.close()
    assert read_records(path) == records
    assert all(len(f.read_bytes()) <= 5 * size for f in log_files(path))  # the size survives the restart


def test_write_after_close_is_refused(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.jsonl")
    log.close()
    assert log.closed
    with pytest.raises(ValueError, match="closed"):
        log.write(_record("2024-06-01", 0))


@pytest.mark.parametrize("change, key", [
    (lambda r: r["interventions"][0]["numbers"].update(price=float("nan")), "interventions[0].numbers.price"),
    (lambda r: r["interventions"][0]["numbers"].update(when=pd.Timestamp("2024-01-01")),
     "interventions[0].numbers.when"),
    (lambda r: r.update(soc_pct=np.float32(3.0)), "soc_pct"),
    (lambda r: r["applied"].update({1: "x"}), "applied: key 1"),
    (lambda r: r.update(schema=2), "schema = 2"),
    (lambda r: r.update(time="2024-06-01 10:00"), "with an offset"),
])
def test_records_that_are_not_json_are_refused_naming_the_key(tmp_path: Path, change: Any, key: str) -> None:
    path = tmp_path / "d.jsonl"
    r = _record("2024-06-01", 1, [_note("spread", price=0.2)])
    change(r)
    with DecisionLog(path) as log:
        with pytest.raises(DataError, match=f"record refused: .*{key.replace('[', '.').replace(']', '.')}"):
            log.write(r)
        log.write(_record("2024-06-01", 0))
    assert len(path.read_bytes().splitlines()) == 1  # nothing of the refused record reached the file


# ---------------------------------------------------------------------------------------------- reader


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    with DecisionLog(path) as log:
        for r in records:
            log.write(r)


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "d.jsonl"
    records = _hourly("2024-06-01", 6)
    _write(path, records[:5])
    with open(path, "ab") as f:  # a crash in the middle of writing the 6th record
        f.write(encode_record(records[5])[:57])
    with caplog.at_level(logging.WARNING, logger="dwars.policy.decision_log"):
        assert read_records(path) == records[:5]
    assert "line 6 is incomplete" in caplog.text and str(path) in caplog.text
    # restart: the writer cuts the fragment off, so the next record does not glue onto it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dwars.policy.decision_log"):
        _write(path, records[5:])
    assert "cut off an incomplete last line of 57 bytes" in caplog.text
    assert read_records(path) == records


def test_power_loss_zeros_at_the_end_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    records = _hourly("2024-06-01", 3)
    _write(path, records)
    with open(path, "ab") as f:  # ext4 after a power cut: the size grew, the data did not arrive
        f.write(b"\0" * 300)
    assert read_records(path) == records


def test_complete_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    records = _hourly("2024-06-01", 4)
    _write(path, records[:2])
    with open(path, "ab") as f:
        f.write(encode_record(records[2]).rstrip(b"\n"))
    assert read_records(path) == records[:3]
    _write(path, records[3:])  # the writer adds the newline first
    assert read_records(path) == records


def test_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [encode_record(r) for r in _hourly("2024-06-01", 5)]
    lines[2] = lines[2][:40] + b"\n"  # damaged in the middle, not a crash at the end
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=r"d\.jsonl: line 3: not a JSON record"):
        read_records(path)


def test_corrupt_line_in_a_rotated_file_names_that_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    _write(path, _hourly("2024-06-02", 2))
    (tmp_path / "d.jsonl.1").write_bytes(encode_record(_record("2024-06-01", 0)) + b"{oops\n")
    with pytest.raises(DataError, match=r"d\.jsonl\.1: line 2"):
        read_records(path)
    assert len(read_records(path, include_rotated=False)) == 2


def test_other_schema_and_non_objects_are_data_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"schema": 2, "time": "2024-06-01T00:00:00+00:00"}) + "\n")
    with pytest.raises(DataError, match="line 1: schema = 2"):
        read_records(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match="line 1: a record must be a JSON object"):
        read_records(path)


def test_missing_log_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such decision log"):
        read_records(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="is a folder"):
        read_records(tmp_path)


def test_time_order_across_files_and_since(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    records = _hourly("2024-03-30 20:00", 10)  # over the spring DST night
    size = len(encode_record(records[0]))
    with DecisionLog(path, max_bytes=3 * size, backups=10) as log:
        for r in records:
            log.write(r)
    assert read_records(path) == records
    local_midnight = pd.Timestamp("2024-03-31", tz=TZ)  # 2024-03-30 23:00 UTC
    assert read_records(path, since=local_midnight) == records[3:]
    assert read_records(path, since=pd.Timestamp("2024-03-31 03:00", tz="UTC")) == records[7:]
    assert read_records(path, since=pd.Timestamp("2025-01-01", tz="UTC")) == []
    with pytest.raises(ValueError, match="give a time zone"):
        read_records(path, since=pd.Timestamp("2024-03-31"))


def test_equal_times_keep_write_order(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    records = [_record("2024-06-01 01:00", 1, controller="rule"), _record("2024-06-01 00:00", 0, controller="mpc"),
               _record("2024-06-01 01:00", 2, controller="mpc")]
    _write(path, records)
    assert read_records(path) == [records[1], records[0], records[2]]


# ---------------------------------------------------------------------------------------------- summary


def test_shield_summary_counts() -> None:
    records = [_record("2024-06-01 00:00", 0), _record("2024-06-01 01:00", 1, [_note("spread")]),
               _record("2024-06-01 02:00", 2, [_note("reserve"), _note("power_limit")]),
               _record("2024-06-01 03:00", 3, [_note("spread")]), _record("2024-06-01 04:00", 4)]
    s = shield_summary(records)
    assert s["decisions"] == 5 and s["decisions_with_intervention"] == 3
    assert s["intervention_rate"] == pytest.approx(0.6) and s["changed"] == 3
    assert s["per_rule"]["spread"] == 2 and s["per_rule"]["reserve"] == 1 and s["per_rule"]["power_limit"] == 1
    assert list(s["per_rule"])[: len(RULE_IDS)] == list(RULE_IDS) and s["per_rule"]["night_end"] == 0
    assert s["first_time"] == "2024-06-01T00:00:00+00:00" and s["last_time"] == "2024-06-01T04:00:00+00:00"
    empty = shield_summary([])
    assert empty["decisions"] == 0 and empty["intervention_rate"] == 0.0


def test_real_shield_interventions_round_trip(tmp_path: Path, week_60: Scenario, home_inst: Installation) -> None:
    """The shield's own intervention records go through the log unchanged and are counted right."""
    from dwars.env.dispatch import simulate_interval
    from dwars.env.forecast import Forecaster
    from dwars.policy.registry import make_controller
    from dwars.policy.shield import Shield

    home = Home.from_installation(home_inst)
    fc, shield = Forecaster(week_60, home, seed=0), Shield(home)
    controller = make_controller("random", home, week_60, seed=1)
    pv = week_60.pv_kw(home_inst).to_numpy()
    load = week_60.frame["load_kw"].to_numpy()
    prices = week_60.frame["price_eur_per_mwh"].to_numpy()
    imp, exp = home.tariff.import_price(prices, week_60.index), home.tariff.export_price(prices, week_60.index)
    b, e, path = home.battery, home_inst.battery.initial_energy_kwh, tmp_path / "d.jsonl"
    by_rule: dict[str, int] = {}
    shielded = 0
    with DecisionLog(path) as log:
        for i, t in enumerate(week_60.index):
            state = State(t, week_60.minutes, e, 100 * e / b.capacity_kwh)
            forecasts = fc.at(i)
            result = shield.check(state, forecasts, controller.decide(state, forecasts))
            shielded += bool(result.interventions)
            for n in result.interventions:
                by_rule[n.rule] = by_rule.get(n.rule, 0) + 1
            log.write(decision_record(t, home.timezone, controller.name, state.soc_pct, result.proposed,
                                      result.applied, [n.to_record() for n in result.interventions],
                                      inputs_digest(state, forecasts)))
            e = float(simulate_interval(e, int(result.applied.mode), result.applied.power_kw, pv[i], load[i], imp[i],
                                        exp[i], week_60.dt_h, b, home.grid_limit_kw,
                                        result.applied.curtail_pv).energy_kwh)
    records = read_records(path)
    assert len(records) == len(week_60.index) and shielded > 0
    s = shield_summary(records)
    assert s["decisions_with_intervention"] == shielded
    assert {k: v for k, v in s["per_rule"].items() if v} == by_rule
    assert all(n["reason_nl"] and n["reason_en"] for r in records for n in r["interventions"])
    # the shield's Intervention objects may be passed as they are
    assert decision_record(t, home.timezone, controller.name, state.soc_pct, result.proposed, result.applied,
                           result.interventions, inputs_digest(state, forecasts)) == records[-1]


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "decisions.jsonl"
    times = pd.date_range("2024-10-26 20:00", periods=8, freq="h", tz="UTC")  # over the autumn DST night
    records = []
    for i, t in enumerate(times):
        notes = [_note("spread", export_price=0.21, spread=0.07)] if i in (2, 5) else []
        if i == 6:
            notes = [_note("reserve", required_kwh=2.0), _note("power_limit")]
        records.append(_record(t, i, notes))
    _write(path, records)
    return path


def test_cli_log_show_prints_the_last_actions(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "show", str(log_file)]) == 0
    out = capsys.readouterr().out
    assert "laatste acties" in out and "last 8 of 8 decisions" in out
    assert "verkopen 0" in out and "zelfverbruik 6" in out and "export 3.00 kW" in out and "msc" in out
    assert "2024-10-27 02:00 +02:00" in out and "2024-10-27 02:00 +01:00" in out  # both autumn 02:00s
    assert out.index("verkopen 0") < out.index("verkopen 7")  # newest last
    assert main(["log", "show", str(log_file), "--limit", "2", "--since", "2024-10-27"]) == 0
    out = capsys.readouterr().out
    assert "last 2 of 6 decisions" in out and "verkopen 7" in out and "verkopen 5" not in out


def test_cli_log_shield_summary_prints_reasons_and_counts(log_file: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "shield", str(log_file), "--summary"]) == 0
    out = capsys.readouterr().out
    assert "spread hield het tegen" in out and "spread blocked it" in out and "reserve hield het tegen" in out
    assert "export 3.00 kW -> msc" in out
    assert "3 of 8 decisions had an intervention (intervention rate 37.5%)" in out
    spread_row = next(line for line in out.splitlines() if line.strip("│ ").startswith("spread ") and "%" in line)
    assert "2" in spread_row and "25.0%" in spread_row
    assert main(["log", "shield", str(log_file), "--rule", "reserve"]) == 0
    out = capsys.readouterr().out
    assert "reserve hield het tegen" in out and "spread hield het tegen" not in out


def test_cli_log_errors_exit_2(tmp_path: Path, log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "show", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such decision log" in capsys.readouterr().err
    assert main(["log", "shield", str(log_file), "--rule", "nonsense"]) == 2
    assert "not a rule id" in capsys.readouterr().err
    assert main(["log", "show", str(log_file), "--since", "gisteren"]) == 2
    assert "not a date or time" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema": 1, "time": "2024-06-01T00:00:00+00:00"}\nnot json\n{}\n')
    assert main(["log", "show", str(bad)]) == 2
    assert "line 2: not a JSON record" in " ".join(capsys.readouterr().err.split())


def test_cli_log_help_names_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["log", "--help"])
    out = capsys.readouterr().out
    assert "dwars log show FILE" in out and "dwars log shield FILE" in out
    with pytest.raises(SystemExit):
        main(["log", "shield", "--help"])
    out = capsys.readouterr().out
    assert "--summary" in out and "--rule" in out and "stale_input" in out
