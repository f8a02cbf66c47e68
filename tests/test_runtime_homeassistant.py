"""The Home Assistant bridge against a real mosquitto broker on 127.0.0.1, watched by a second real MQTT client."""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers_mqtt import WAIT_S, Broker, Watcher, find_mosquitto
from hypothesis import given, settings
from hypothesis import strategies as st

from dwars.config import PROFILES, ConfigError, Installation, load_config
from dwars.env.modes import Mode
from dwars.runtime.homeassistant import CONTROLS, SENSORS, HomeAssistantBridge, write_config_value
from dwars.runtime.status import RuntimeStatus, next_charge_block

ROOT = Path(__file__).resolve().parents[1]
HOME_TOML = ROOT / "examples" / "home.toml"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "cfg" / "home.toml"
    path.parent.mkdir()
    shutil.copy(HOME_TOML, path)
    return path


@pytest.fixture
def changes() -> queue.Queue[Installation]:
    return queue.Queue()


@pytest.fixture
def bridge(broker: Broker, home: Path, changes: queue.Queue[Installation]) -> Iterator[HomeAssistantBridge]:
    b = HomeAssistantBridge(broker.host, broker.port, home, on_config_change=changes.put).start()
    assert b.wait_connected(WAIT_S), f"the bridge did not connect to {broker.host}:{broker.port}"
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def watcher(broker: Broker) -> Iterator[Watcher]:
    w = Watcher(broker)
    try:
        yield w
    finally:
        w.close()


def status(**changes: Any) -> RuntimeStatus:
    values: dict[str, Any] = dict(
        time=pd.Timestamp("2024-06-03 10:15", tz="UTC"), mode="Export", reason="discharging: evening peak 0.41",
        power_kw=-2.5, soc_pct=63.25, reserve_pct=20.0, endpoint_pct=90.0, endpoint_hour=17,
        next_charge_start=pd.Timestamp("2024-06-03 12:00", tz="UTC"),
        next_charge_end=pd.Timestamp("2024-06-03 13:30", tz="UTC"), cost_today_eur=-0.42,
        cost_today_without_battery_eur=1.37, shield_interventions_today=3, safe_mode=False, controller="rl")
    values.update(changes)
    return RuntimeStatus(**values)


ENTITY_COUNT = len(SENSORS) + len(CONTROLS)
CONTROL = {c.entity.object_id: c for c in CONTROLS}


def configs(w: Watcher) -> dict[str, dict[str, Any]]:
    """The discovery configs the watcher has seen, by topic (each must be valid JSON)."""
    return {t: json.loads(p) for t, p in w.latest().items() if t.startswith("homeassistant/") and t.endswith("/config")}


def wait_all_configs(w: Watcher) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and len(configs(w)) < ENTITY_COUNT:
        time.sleep(0.02)
    found = configs(w)
    assert len(found) == ENTITY_COUNT, f"{len(found)} of {ENTITY_COUNT} discovery configs: {sorted(found)}"
    return found


# --------------------------------------------------------------------------------------------------
# Discovery and states.
# --------------------------------------------------------------------------------------------------


def test_discovery_configs_have_what_home_assistant_requires(bridge: HomeAssistantBridge, watcher: Watcher) -> None:
    found = wait_all_configs(watcher)
    assert watcher.wait("dwars/availability") == "online"
    unique_ids = set()
    for topic, cfg in found.items():
        m = re.fullmatch(r"homeassistant/(sensor|binary_sensor|select|number)/dwars/([A-Za-z0-9_-]+)/config", topic)
        assert m, topic
        component, object_id = m.groups()
        assert cfg["unique_id"] == f"dwars_{object_id}" and cfg["name"]
        unique_ids.add(cfg["unique_id"])
        assert cfg["state_topic"] == f"dwars/{object_id}/state"
        assert cfg["availability_topic"] == "dwars/availability"
        assert (cfg["payload_available"], cfg["payload_not_available"]) == ("online", "offline")
        assert cfg["device"]["identifiers"] == ["dwars"] and cfg["device"]["name"] == "dwars"
        # Home Assistant's rules between device class, unit and state class.
        dc, unit, sc = cfg.get("device_class"), cfg.get("unit_of_measurement"), cfg.get("state_class")
        if dc == "power":
            assert unit in ("W", "kW") and sc == "measurement"
        if dc == "battery":
            assert unit == "%" and sc == "measurement"
        if dc == "monetary":
            assert unit == "EUR" and sc in (None, "total") and "last_reset_value_template" in cfg
        if dc == "timestamp":
            assert unit is None and sc is None
        if component in ("select", "number"):
            assert cfg["command_topic"] == f"dwars/{object_id}/set"
        else:
            assert "command_topic" not in cfg
    assert len(unique_ids) == ENTITY_COUNT
    profile = found["homeassistant/select/dwars/profile/config"]
    assert profile["options"] == list(PROFILES)
    reserve = found["homeassistant/number/dwars/reserve/config"]
    assert (reserve["min"], reserve["max"], reserve["step"], reserve["unit_of_measurement"]) == (0, 100, 1, "%")
    hour = found["homeassistant/number/dwars/endpoint_hour/config"]
    assert (hour["min"], hour["max"]) == (0, 23)
    # The controls start at the file's values.
    assert watcher.wait("dwars/profile/state") == "gemiddeld"
    assert watcher.wait("dwars/reserve/state") == "20"
    assert watcher.wait("dwars/endpoint_soc/state") == "90"
    assert watcher.wait("dwars/endpoint_hour/state") == "17"


def test_the_number_ranges_are_the_validators(tmp_path: Path) -> None:
    # Each number's min and max pass the config validator, and one step beyond them is refused.
    for control in CONTROLS:
        if control.entity.component != "number":
            continue
        lo, hi = control.entity.extra["min"], control.entity.extra["max"]
        for value, ok in ((lo, True), (hi, True), (lo - 1, False), (hi + 1, False)):
            path = tmp_path / f"{control.key}_{value}.toml"
            # A permissive home, so only the key's own range can refuse.
            path.write_text("[battery]\nreserve_pct = 0\ninitial_soc_pct = 100\n[goals]\nendpoint_soc_pct = 100\n"
                            "night_end_soc_pct = 100\n")
            if ok:
                assert getattr(getattr(write_config_value(path, control.section, control.key, value),
                                       control.section), control.key) == value
            else:
                with pytest.raises(ConfigError, match=re.escape(control.where)):
                    write_config_value(path, control.section, control.key, value)


def test_states_after_publish(bridge: HomeAssistantBridge, watcher: Watcher) -> None:
    bridge.publish(status(reason="x" * 400))
    assert watcher.wait("dwars/mode/state") == "Export"
    assert watcher.wait("dwars/reason/state") == "x" * 255  # Home Assistant refuses longer states
    assert watcher.wait("dwars/power/state") == "-2.5"
    assert watcher.wait("dwars/soc/state") == "63.2"
    assert watcher.wait("dwars/reserve_target/state") == "20"
    assert watcher.wait("dwars/endpoint_target/state") == "90"
    assert watcher.wait("dwars/endpoint_time/state") == "17:00"
    assert watcher.wait("dwars/next_charge_start/state") == "2024-06-03T12:00:00+00:00"
    assert watcher.wait("dwars/next_charge_end/state") == "2024-06-03T13:30:00+00:00"
    # Local midnight of 3 June (CEST) is 22:00 UTC the day before.
    cost = json.loads(watcher.wait("dwars/cost_today/state"))
    assert cost == {"value": -0.42, "last_reset": "2024-06-02T22:00:00+00:00"}
    assert json.loads(watcher.wait("dwars/cost_today_without_battery/state"))["value"] == 1.37
    assert json.loads(watcher.wait("dwars/saving_today/state"))["value"] == pytest.approx(1.79)
    assert watcher.wait("dwars/shield_interventions_today/state") == "3"
    assert watcher.wait("dwars/safe_mode/state") == "OFF"
    assert watcher.wait("dwars/controller/state") == "rl"
    assert watcher.wait("dwars/last_decision/state") == "2024-06-03T10:15:00+00:00"
    assert watcher.wait("dwars/grid_voltage/state") == "None"  # no [voltage]: unknown to Home Assistant
    assert watcher.wait("dwars/high_voltage/state") == "OFF"
    bridge.publish(status(grid_voltage_v=251.84, high_voltage=True))
    assert watcher.wait("dwars/grid_voltage/state", "251.8")
    assert watcher.wait("dwars/high_voltage/state", "ON")
    # No charge planned, endpoint off, safe mode on: "None" is Home Assistant's "unknown".
    bridge.publish(status(next_charge_start=None, next_charge_end=None, endpoint_hour=None, safe_mode=True,
                          mode="MSC", time=pd.Timestamp("2024-12-01 07:00", tz="UTC")))
    assert watcher.wait("dwars/next_charge_start/state", "None")
    assert watcher.wait("dwars/endpoint_time/state", "off")
    assert watcher.wait("dwars/safe_mode/state", "ON")
    # Winter: local midnight (CET) is 23:00 UTC.
    assert watcher.wait("dwars/cost_today/state", lambda p: json.loads(p)["last_reset"] == "2024-11-30T23:00:00+00:00")
    # Every state is retained: a client that comes later (Home Assistant after a restart) gets them at once.
    late = Watcher(bridge_broker(bridge), ("dwars/#",))
    try:
        assert late.wait("dwars/mode/state") == "MSC"
        assert all(r for _, _, r in late.messages)  # delivered from the broker's store
    finally:
        late.close()


def bridge_broker(bridge: HomeAssistantBridge) -> Broker:
    b = Broker.__new__(Broker)
    b.host, b.port = bridge.host, bridge.port
    return b


# --------------------------------------------------------------------------------------------------
# Commands from Home Assistant.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("object_id", "payload", "expected"), [
    ("profile", "rustig", "rustig"),
    ("reserve", "25", 25.0),
    ("endpoint_soc", "80.5", 80.5),
    ("endpoint_hour", "18", 18),
])
def test_a_valid_command_changes_the_file_safely(bridge: HomeAssistantBridge, watcher: Watcher, home: Path,
                                                 changes: queue.Queue[Installation], object_id: str, payload: str,
                                                 expected: Any) -> None:
    control = CONTROL[object_id]
    original = home.read_text()
    watcher.wait(f"dwars/{object_id}/state")
    watcher.send(f"dwars/{object_id}/set", payload)
    new = changes.get(timeout=WAIT_S)
    assert getattr(getattr(new, control.section), control.key) == expected
    assert getattr(getattr(load_config(home), control.section), control.key) == expected
    assert watcher.wait(f"dwars/{object_id}/state", payload)
    # Only that one line differs, and its comment is still there, in the same column.
    old_lines, new_lines = original.splitlines(), home.read_text().splitlines()
    differ = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert len(differ) == 1 and differ[0][1].startswith(f"{control.key} = ")
    before, after = differ[0]
    if "#" in before:
        assert after.index("#") == before.index("#") and after.split("#", 1)[1] == before.split("#", 1)[1]
    assert (home.parent / "home.toml.bak").read_text() == original
    assert sorted(p.name for p in home.parent.iterdir()) == ["home.toml", "home.toml.bak"]  # no temp file left
    assert bridge.installation == new


@pytest.mark.parametrize(("object_id", "payload", "words"), [
    ("reserve", "150", "battery.reserve_pct = 150: must be 0..100"),
    ("reserve", "twenty", "battery.reserve_pct = 'twenty': must be a number"),
    ("reserve", "nan", "battery.reserve_pct = 'nan': must be a number"),
    ("reserve", "95", "must be at least battery.reserve_pct (95)"),  # above the night-end target of 30
    ("profile", "turbo", "strategy.profile = 'turbo': must be one of rustig, gemiddeld"),
    ("endpoint_hour", "17.5", "goals.endpoint_hour = 17.5: must be a whole number"),
    ("endpoint_soc", "", "goals.endpoint_soc_pct = '': must be a number"),
])
def test_an_invalid_command_changes_nothing(bridge: HomeAssistantBridge, watcher: Watcher, home: Path,
                                            changes: queue.Queue[Installation], caplog: pytest.LogCaptureFixture,
                                            object_id: str, payload: str, words: str) -> None:
    caplog.set_level(logging.WARNING, logger="dwars.runtime.homeassistant")
    original_bytes, original_stat = home.read_bytes(), home.stat()
    state_topic = f"dwars/{object_id}/state"
    old = watcher.wait(state_topic)
    seen = watcher.count(state_topic)
    watcher.send(f"dwars/{object_id}/set", payload)
    # The old value is published again so Home Assistant moves the entity back.
    assert watcher.wait(state_topic, after=seen) == old
    assert home.read_bytes() == original_bytes and home.stat().st_mtime_ns == original_stat.st_mtime_ns
    assert sorted(p.name for p in home.parent.iterdir()) == ["home.toml"]  # no .bak, no temp file
    assert changes.empty()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and words in refusals[0], refusals


def test_a_broken_config_file_refuses_every_change(bridge: HomeAssistantBridge, watcher: Watcher, home: Path,
                                                   changes: queue.Queue[Installation],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # The owner is halfway through editing the file by hand: dwars does not write over it.
    broken = home.read_text().replace("capacity_kwh = 10.0", "capacity_kwh = -1")
    home.write_text(broken)
    watcher.wait("dwars/reserve/state")
    seen = watcher.count("dwars/reserve/state")
    watcher.send("dwars/reserve/set", "25")
    assert watcher.wait("dwars/reserve/state", after=seen) == "20"
    assert home.read_text() == broken and changes.empty()
    assert any("battery.capacity_kwh = -1" in r.getMessage() for r in caplog.records)


def test_home_assistant_restart_gets_discovery_again(bridge: HomeAssistantBridge, watcher: Watcher) -> None:
    topic = "homeassistant/sensor/dwars/mode/config"
    watcher.wait(topic)
    seen = watcher.count(topic)
    watcher.send("homeassistant/status", "online")  # Home Assistant's birth message
    watcher.wait(topic, after=seen)


# --------------------------------------------------------------------------------------------------
# Availability, last will and reconnects.
# --------------------------------------------------------------------------------------------------


def test_close_says_offline(broker: Broker, home: Path, watcher: Watcher) -> None:
    b = HomeAssistantBridge(broker.host, broker.port, home).start()
    assert b.wait_connected(WAIT_S)
    watcher.wait("dwars/availability", "online")
    b.close()
    watcher.wait("dwars/availability", "offline")


BRIDGE_PROCESS = """
import sys, time
from dwars.runtime.homeassistant import HomeAssistantBridge
b = HomeAssistantBridge("127.0.0.1", int(sys.argv[1]), sys.argv[2]).start()
assert b.wait_connected(10)
print("ready", flush=True)
time.sleep(60)
"""


def test_last_will_offline_when_the_connection_dies(broker: Broker, home: Path, watcher: Watcher) -> None:
    # A real dwars process killed without a goodbye: the broker itself announces it offline.
    proc = subprocess.Popen([sys.executable, "-c", BRIDGE_PROCESS, str(broker.port), str(home)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", line + proc.stdout.read()
        watcher.wait("dwars/availability", "online")
        seen = watcher.count("dwars/availability")
        proc.send_signal(signal.SIGKILL)
        proc.wait(WAIT_S)
        assert watcher.wait("dwars/availability", after=seen) == "offline"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_broker_restart_republishes_discovery_and_states(broker: Broker, bridge: HomeAssistantBridge) -> None:
    bridge.publish(status(mode="Import", power_kw=3.0))
    before = Watcher(broker)
    try:
        wait_all_configs(before)
        before.wait("dwars/mode/state", "Import")
    finally:
        before.close()
    connects = bridge.connects
    port = broker.port
    broker.stop()  # persistence off: the broker forgets every retained message
    broker.start(port)
    after = Watcher(broker)
    try:
        wait_all_configs(after)
        assert after.wait("dwars/availability") == "online"
        assert after.wait("dwars/mode/state") == "Import" and after.wait("dwars/power/state") == "3"
        assert after.wait("dwars/reserve/state") == "20"
        assert bridge.connects == connects + 1
    finally:
        after.close()


def test_mosquitto_missing_fails_with_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install mosquitto"):
        find_mosquitto(extra_dirs=(str(tmp_path),), path=str(tmp_path))


# --------------------------------------------------------------------------------------------------
# The config edit and the status helpers, without a broker.
# --------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["profile", "reserve", "endpoint_soc", "endpoint_hour"]), st.data())
def test_write_config_value_keeps_every_other_line(object_id: str, data: st.DataObject) -> None:
    control = CONTROL[object_id]
    value: Any = {
        "profile": st.sampled_from(PROFILES),
        "reserve": st.integers(0, 30) | st.floats(0, 30).map(lambda v: round(v, 1)),  # <= night end 30
        "endpoint_soc": st.integers(30, 100),
        "endpoint_hour": st.integers(0, 23),
    }[object_id]
    value = data.draw(value)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "home.toml"
        shutil.copy(HOME_TOML, path)
        original = path.read_text()
        inst = write_config_value(path, control.section, control.key, value)
        assert getattr(getattr(inst, control.section), control.key) == value
        assert inst == load_config(path) and inst.name == "home"
        old_lines, new_lines = original.splitlines(), path.read_text().splitlines()
        assert len(old_lines) == len(new_lines)
        assert sum(a != b for a, b in zip(old_lines, new_lines, strict=True)) <= 1
        assert [ln for ln in new_lines if ln.lstrip().startswith("#")] == \
               [ln for ln in old_lines if ln.lstrip().startswith("#")]


@settings(max_examples=30, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not 0 <= v <= 100))
def test_write_config_value_refuses_out_of_range_reserve(value: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "home.toml"
        shutil.copy(HOME_TOML, path)
        with pytest.raises(ConfigError, match="battery.reserve_pct"):
            write_config_value(path, "battery", "reserve_pct", value)
        assert path.read_text() == HOME_TOML.read_text()
        assert [p.name for p in Path(d).iterdir()] == ["home.toml"]


def test_write_config_value_adds_a_missing_section(tmp_path: Path) -> None:
    path = tmp_path / "small.toml"
    path.write_text("# my home\n[battery]\ncapacity_kwh = 5.0  # small one\n")
    inst = write_config_value(path, "strategy", "profile", "maximaal")
    assert inst.strategy.profile == "maximaal" and inst.battery.capacity_kwh == 5.0 and inst.name == "small"
    assert path.read_text().startswith("# my home\n[battery]\ncapacity_kwh = 5.0  # small one\n")


def test_runtime_status_is_utc_and_checked() -> None:
    s = status(time=pd.Timestamp("2024-10-27 02:30").tz_localize("Europe/Amsterdam", ambiguous=True))  # CEST
    assert str(s.time.tz) == "UTC" and s.time == pd.Timestamp("2024-10-27 00:30", tz="UTC")
    assert s.saving_today_eur == pytest.approx(1.79)
    with pytest.raises(ValueError, match="RuntimeStatus.time"):
        status(time=pd.Timestamp("2024-06-03 10:15"))
    with pytest.raises(ValueError, match="give both or neither"):
        status(next_charge_end=None)
    with pytest.raises(ValueError, match="endpoint_hour = 24"):
        status(endpoint_hour=24)


IMP, M, E, H = int(Mode.IMPORT), int(Mode.MSC), int(Mode.EXPORT), int(Mode.HOLD)


def test_next_charge_block_examples() -> None:
    t = pd.date_range("2024-03-31 00:00", periods=8, freq="15min", tz="UTC")  # across the spring DST change
    assert next_charge_block(t, [M, M, IMP, IMP, IMP, M, IMP, IMP]) == (t[2], t[5])
    assert next_charge_block(t, [IMP, IMP, M, M, M, M, M, M]) == (t[0], t[2])  # under way now
    assert next_charge_block(t, [M] * 6 + [IMP, IMP]) == (t[6], t[7] + pd.Timedelta("15min"))  # runs to the plan's end
    assert next_charge_block(t, [M, H, E, M, H, E, M, H]) is None
    hours = pd.date_range("2024-10-27 00:00", periods=4, freq="1h", tz="Europe/Amsterdam")  # 25-hour day
    assert next_charge_block(hours, [M, IMP, IMP, M]) == (hours[1].tz_convert("UTC"), hours[3].tz_convert("UTC"))
    gap = t.delete(4)  # a missing interval ends the block
    assert next_charge_block(gap, [IMP, IMP, IMP, IMP, IMP, IMP, IMP]) == (t[0], t[4])
    assert next_charge_block(t[:1], [IMP], minutes=60) == (t[0], t[0] + pd.Timedelta("1h"))
    with pytest.raises(ValueError, match="give minutes"):
        next_charge_block(t[:1], [IMP])
    with pytest.raises(ValueError, match="8 times but 7 modes"):
        next_charge_block(t, [IMP] * 7)


@given(st.lists(st.sampled_from([M, H, IMP, E]), min_size=2, max_size=60), st.sampled_from([15, 60]))
def test_next_charge_block_is_the_first_import_run(modes: list[int], minutes: int) -> None:
    t = pd.date_range("2024-10-26 22:00", periods=len(modes), freq=f"{minutes}min", tz="UTC")
    block = next_charge_block(t, modes)
    if IMP not in modes:
        assert block is None
        return
    assert block is not None
    start, end = block
    first = modes.index(IMP)
    n = int((end - start) / pd.Timedelta(minutes=minutes))
    assert start == t[first] and n >= 1
    assert modes[first:first + n] == [IMP] * n
    assert first + n == len(modes) or modes[first + n] != IMP
