"""The P1 meter through Home Assistant's DSMR integration (no splitter): a real HTTP server that answers like Home
Assistant's REST API, a real WebSocket server that speaks its WebSocket API, and a real mosquitto that carries
``mqtt_statestream``'s topics, all with the states and messages of tests/fixtures/hass/ (see its README).
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers_mqtt import Broker, free_port
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.server import ServerConnection, serve

from dwars.config import RuntimeConfig
from dwars.runtime.meter import (
    DsmrSerialMeter,
    DsmrTcpMeter,
    HomeAssistantMqttMeter,
    HomeAssistantRestMeter,
    HomeAssistantWebSocketMeter,
    HomeWizardMeter,
    MeterError,
    MeterReading,
    open_configured_meter,
    open_meter,
    reading_from_states,
)
from dwars.runtime.meter.hass import (
    DEFAULT_ENTITY_PREFIX,
    EntityState,
    apply_entities_event,
    entity_ids,
    state_from_ha,
    websocket_url,
)

FIX = Path(__file__).parent / "fixtures" / "hass"
STATES: list[dict[str, Any]] = json.loads((FIX / "states_dsmr5_3phase.json").read_text(encoding="utf-8"))
WS: dict[str, Any] = json.loads((FIX / "ws_messages.json").read_text(encoding="utf-8"))
TOKEN = "eyJhbGciOiJIUzI1NiJ9.dwars-test-token"
P = DEFAULT_ENTITY_PREFIX
T1 = datetime(2024, 6, 15, 10, 0, 1, 208912, tzinfo=UTC)  # the newest write of a power entity in the fixture
T2 = datetime(2024, 6, 15, 10, 0, 31, 262470, tzinfo=UTC)  # the kettle's change
NOON = datetime(2024, 6, 15, 12, tzinfo=UTC)

# What the fixture's meter says: exporting 2.107 kW, 0.412 kW drawn on L1 while L2 and L3 feed in.
EXPECTED = MeterReading(
    time=T1, import_kw=0.0, export_kw=2.107,
    import_kwh_total=7512.336 + 6893.204, export_kwh_total=2211.482 + 5120.937,
    phase_power_kw=(0.412, -1.263, -1.256), phase_current_a=(2.0, 5.0, 5.0), phase_voltage_v=(231.4, 233.0, 232.1),
    gas_m3_total=4388.218, source="",
)


def same(reading: MeterReading, expected: MeterReading = EXPECTED) -> None:
    """Equal to ``expected`` apart from the source, the sums to floating-point precision."""
    assert reading.time == expected.time
    for name in ("import_kw", "export_kw", "import_kwh_total", "export_kwh_total", "gas_m3_total"):
        assert getattr(reading, name) == pytest.approx(getattr(expected, name), rel=1e-12, abs=1e-12), name
    for name in ("phase_power_kw", "phase_current_a", "phase_voltage_v"):
        got, want = getattr(reading, name), getattr(expected, name)
        assert (got is None) == (want is None), name
        if want is not None:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12), name


def edited(states: list[dict[str, Any]], entity_id: str, state: str | None = None, unit: str | None = None,
           drop: bool = False) -> list[dict[str, Any]]:
    """A copy of the state objects with one entity's state or unit changed, or the entity left out."""
    out = copy.deepcopy(states)
    if drop:
        return [s for s in out if s["entity_id"] != entity_id]
    (obj,) = (s for s in out if s["entity_id"] == entity_id)
    if state is not None:
        obj["state"] = state
    if unit is not None:
        obj["attributes"]["unit_of_measurement"] = unit
    return out


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def closed_port() -> int:
    return free_port()  # nothing listens there (bound and released at once)


# ----------------------------------------------------------------------------------- the entities into a reading


def test_the_fixture_states_make_the_reading_of_the_meter() -> None:
    reading = reading_from_states(STATES, source="homeassistant test")
    same(reading)
    assert reading.source == "homeassistant test"
    assert reading.net_kw == pytest.approx(-2.107)
    assert sum(reading.phase_power_kw or ()) == pytest.approx(reading.net_kw)  # the phases add up to the total


def test_the_time_is_the_newest_write_of_a_power_entity() -> None:
    states = {s.entity_id: s for s in map(state_from_ha, STATES)}
    # power_consumption has not changed since 09:58 (0.0 kW) but was reported at 10:00:01.208845.
    assert states[P + "power_consumption"].updated == datetime(2024, 6, 15, 10, 0, 1, 208845, tzinfo=UTC)
    old = {k: replace(v, updated=None) if k.startswith(P + "power_") else v for k, v in states.items()}
    # Without any time on the power entities the clock gives it.
    assert reading_from_states(old, clock=lambda: NOON).time == NOON
    # Counters and phases that were written later do not move the reading's time.
    later = dict(states)
    later[P + "voltage_phase_l1"] = replace(states[P + "voltage_phase_l1"], updated=NOON)
    assert reading_from_states(later).time == T1


@pytest.mark.parametrize(("entity_id", "state", "unit", "field", "value"), [
    (P + "power_consumption", "1874", "W", "import_kw", 1.874),
    (P + "power_production", "2107.0", "W", "export_kw", 2.107),
    (P + "power_production", "0.002107", "MW", "export_kw", 2.107),
    (P + "energy_consumption_tarif_1", "7512336", "Wh", "import_kwh_total", 7512.336 + 6893.204),
    (P + "energy_production_tarif_2", "5.120937", "MWh", "export_kwh_total", 2211.482 + 5120.937),
])
def test_units_in_w_and_wh_are_converted(entity_id: str, state: str, unit: str, field: str, value: float) -> None:
    reading = reading_from_states(edited(STATES, entity_id, state, unit))
    assert getattr(reading, field) == pytest.approx(value, rel=1e-12)


def test_a_phase_power_in_w_and_a_voltage_in_kv_are_converted() -> None:
    states = edited(STATES, P + "power_production_phase_l2", "1263", "W")
    states = edited(states, P + "voltage_phase_l3", "0.2321", "kV")
    reading = reading_from_states(states)
    assert reading.phase_power_kw == pytest.approx((0.412, -1.263, -1.256))
    assert reading.phase_voltage_v == pytest.approx((231.4, 233.0, 232.1))


@settings(max_examples=60, deadline=None)
@given(kw=st.floats(0, 60, allow_nan=False), kwh=st.floats(0, 1e6, allow_nan=False),
       power_unit=st.sampled_from(["W", "kW", "MW"]), energy_unit=st.sampled_from(["Wh", "kWh", "MWh"]))
def test_the_unit_home_assistant_shows_does_not_change_the_reading(kw: float, kwh: float, power_unit: str,
                                                                   energy_unit: str) -> None:
    factor = {"W": 1000.0, "kW": 1.0, "MW": 0.001, "Wh": 1000.0, "kWh": 1.0, "MWh": 0.001}
    states = edited(STATES, P + "power_consumption", repr(kw * factor[power_unit]), power_unit)
    states = edited(states, P + "energy_production_tarif_1", repr(kwh * factor[energy_unit]), energy_unit)
    reading = reading_from_states(states)
    assert reading.import_kw == pytest.approx(kw, rel=1e-9, abs=1e-12)
    assert reading.export_kwh_total == pytest.approx(kwh + 5120.937, rel=1e-9)


def test_an_entity_without_a_unit_is_taken_in_the_integrations_unit() -> None:
    states = copy.deepcopy(STATES)
    for obj in states:
        obj["attributes"].pop("unit_of_measurement", None)
    same(reading_from_states(states))


@pytest.mark.parametrize(("entity_id", "state", "field"), [
    (P + "voltage_phase_l2", "unavailable", "phase_voltage_v"),
    (P + "current_phase_l3", "unknown", "phase_current_a"),
    (P + "power_production_phase_l1", "unavailable", "phase_power_kw"),  # an export would read as zero
    ("sensor.gas_meter_gas_consumption", "unknown", "gas_m3_total"),
])
def test_an_unavailable_optional_entity_leaves_only_its_field_out(entity_id: str, state: str, field: str) -> None:
    reading = reading_from_states(edited(STATES, entity_id, state))
    assert getattr(reading, field) is None
    assert replace(reading, **{field: getattr(EXPECTED, field)}) == replace(EXPECTED, source=reading.source)


def test_a_single_phase_meter_has_one_phase() -> None:
    states = STATES
    for n in (2, 3):
        for kind in ("power_consumption", "power_production", "voltage", "current"):
            states = edited(states, f"{P}{kind}_phase_l{n}", drop=True)
    reading = reading_from_states(states)
    assert reading.phase_power_kw == (0.412,)
    assert reading.phase_voltage_v == (231.4,)
    assert reading.phase_current_a == (2.0,)


def test_a_meter_with_total_registers_only_uses_them() -> None:
    states = [s for s in STATES if "_tarif_" not in s["entity_id"]]
    for direction, value in (("consumption", "14405.54"), ("production", "7332.419")):
        total = copy.deepcopy(next(s for s in STATES if s["entity_id"] == f"{P}energy_{direction}_tarif_1"))
        total.update(entity_id=f"{P}energy_{direction}_total", state=value)
        states.append(total)
    reading = reading_from_states(states)
    assert (reading.import_kwh_total, reading.export_kwh_total) == (14405.54, 7332.419)


@pytest.mark.parametrize(("entity_id", "message"), [
    (P + "power_production", r"no entity sensor\.electricity_meter_power_production \(power exported now\).*"
                             r"ha_entity_prefix"),
    (P + "power_consumption", r"no entity sensor\.electricity_meter_power_consumption"),
    (P + "energy_consumption_tarif_1", r"neither sensor\.electricity_meter_energy_consumption_tarif_1 nor "
                                       r"sensor\.electricity_meter_energy_consumption_total"),
    (P + "energy_production_tarif_2", r"no entity sensor\.electricity_meter_energy_production_tarif_2"),
])
def test_a_missing_required_entity_is_named(entity_id: str, message: str) -> None:
    with pytest.raises(MeterError, match=message):
        reading_from_states(edited(STATES, entity_id, drop=True))


@pytest.mark.parametrize(("state", "unit", "message"), [
    ("unavailable", None, r"power_consumption \(power imported now\) is 'unavailable' in Home Assistant: its DSMR "
                          r"integration gets no telegrams"),
    ("unknown", None, r"is 'unknown'"),
    ("n/a", None, r"= 'n/a' is not a number"),
    ("nan", None, r"= 'nan' is not a number"),
    ("-0.5", None, r"-0\.5 kW is negative"),
    ("1.2", "kVA", r"is in 'kVA'; dwars reads kW or W or MW"),
])
def test_an_unusable_required_entity_is_named_with_the_reason(state: str, unit: str | None, message: str) -> None:
    with pytest.raises(MeterError, match=message):
        reading_from_states(edited(STATES, P + "power_consumption", state, unit))


def test_a_gas_meter_in_an_energy_unit_is_left_out() -> None:
    reading = reading_from_states(edited(STATES, "sensor.gas_meter_gas_consumption", "51.2", "kWh"))
    assert reading.gas_m3_total is None and reading.import_kw == 0.0


def test_the_compressed_websocket_states_are_the_same_states() -> None:
    states: dict[str, EntityState] = {}
    apply_entities_event(states, WS["entities_added"]["event"])
    rest = {s.entity_id: s for s in map(state_from_ha, STATES)}
    for entity_id, st_ in states.items():
        assert (st_.state, st_.unit) == (rest[entity_id].state, rest[entity_id].unit), entity_id
    same(reading_from_states(states))


def test_a_change_event_updates_state_time_and_attributes_and_a_removal_forgets() -> None:
    states: dict[str, EntityState] = {}
    apply_entities_event(states, WS["entities_added"]["event"])
    apply_entities_event(states, WS["kettle_on"]["event"])
    assert states[P + "power_consumption"] == EntityState(P + "power_consumption", "0.093", "kW", T2)
    lu = T2.timestamp() + 30
    apply_entities_event(states, {"c": {P + "power_consumption": {"+": {"lu": lu, "a": {"unit_of_measurement": "W"}}}}})
    assert states[P + "power_consumption"].unit == "W" and states[P + "power_consumption"].state == "0.093"
    assert states[P + "power_consumption"].updated == datetime.fromtimestamp(lu, UTC)
    apply_entities_event(states, {"c": {P + "power_consumption": {"-": {"a": ["unit_of_measurement"]}}}})
    assert states[P + "power_consumption"].unit is None
    apply_entities_event(states, {"r": [P + "power_consumption"]})
    with pytest.raises(MeterError, match="no entity sensor.electricity_meter_power_consumption"):
        reading_from_states(states)


def test_the_websocket_address_follows_the_http_address() -> None:
    assert websocket_url("http://homeassistant.local:8123") == "ws://homeassistant.local:8123/api/websocket"
    assert websocket_url("https://ha.example.nl/") == "wss://ha.example.nl/api/websocket"
    assert websocket_url("http://10.0.0.5:8123/proxy") == "ws://10.0.0.5:8123/proxy/api/websocket"
    with pytest.raises(MeterError, match="must be http://host:port"):
        websocket_url("homeassistant.local:8123")


def test_the_entity_ids_follow_the_prefix() -> None:
    ids = entity_ids("sensor.p1_", None)
    assert "sensor.p1_power_consumption" in ids and "sensor.p1_voltage_phase_l3" in ids
    assert all(i.startswith("sensor.p1_") for i in ids)
    assert entity_ids()[-1] == "sensor.gas_meter_gas_consumption"


# ------------------------------------------------------------------------------------------------ REST API


class RestHandler(BaseHTTPRequestHandler):
    """Answers like Home Assistant's REST API (``/api/states``, ``/api/states/<entity_id>``) from ``server.ha``."""

    def do_GET(self) -> None:
        ha: FakeRest = self.server.ha  # type: ignore[attr-defined]
        ha.requests.append((self.path, self.headers.get("Authorization", "")))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, b"401: Unauthorized", "text/plain")
            return
        states = {s["entity_id"]: s for s in ha.states}
        entity_id = urllib.parse.unquote(self.path.removeprefix("/api/states/"))
        if self.path == "/api/states":
            self._send(200, json.dumps(list(states.values())).encode())
        elif entity_id in ha.garbage:
            self._send(200, b"<html>502 Bad Gateway</html>", "text/html")
        elif self.path.startswith("/api/states/") and entity_id in states:
            self._send(200, json.dumps(states[entity_id]).encode())
        else:
            self._send(404, b'{"message":"Entity not found."}')

    def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class FakeRest:
    def __init__(self) -> None:
        self.states = copy.deepcopy(STATES)
        self.garbage: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.url = ""

    def asked(self, entity_id: str) -> int:
        return sum(1 for path, _ in self.requests if path == f"/api/states/{entity_id}")


@pytest.fixture
def ha_rest() -> Iterator[FakeRest]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RestHandler)
    fake = FakeRest()
    server.ha = fake  # type: ignore[attr-defined]
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def test_rest_reads_each_entity_with_the_token(ha_rest: FakeRest) -> None:
    meter = HomeAssistantRestMeter(ha_rest.url, TOKEN, timeout_s=2)
    reading = run(meter.read())
    same(reading)
    assert reading.source == f"homeassistant {ha_rest.url}"
    assert {auth for _, auth in ha_rest.requests} == {f"Bearer {TOKEN}"}
    assert ha_rest.asked(P + "power_consumption") == 1 and ha_rest.asked(P + "energy_consumption_total") == 1
    # The next read asks only for the entities Home Assistant has (the totals do not exist on this meter).
    same(run(meter.read()))
    assert ha_rest.asked(P + "power_consumption") == 2 and ha_rest.asked(P + "energy_consumption_total") == 1
    assert len(ha_rest.requests) == len(meter.entities) + len(STATES) - 2  # sun.sun and active_tariff: not asked


def test_rest_follows_a_change_and_a_unit_in_w(ha_rest: FakeRest) -> None:
    meter = HomeAssistantRestMeter(ha_rest.url, TOKEN, timeout_s=2)
    run(meter.read())
    ha_rest.states = edited(ha_rest.states, P + "power_consumption", "1874", "W")
    assert run(meter.read()).import_kw == pytest.approx(1.874)


def test_rest_with_an_unavailable_voltage_leaves_out_only_the_voltages(ha_rest: FakeRest) -> None:
    ha_rest.states = edited(STATES, P + "voltage_phase_l2", "unavailable")
    reading = run(HomeAssistantRestMeter(ha_rest.url, TOKEN, timeout_s=2).read())
    assert reading.phase_voltage_v is None and reading.phase_power_kw == pytest.approx((0.412, -1.263, -1.256))


def test_rest_names_a_missing_entity_and_the_prefix(ha_rest: FakeRest) -> None:
    meter = HomeAssistantRestMeter(ha_rest.url, TOKEN, "sensor.p1_meter_", timeout_s=2)
    with pytest.raises(MeterError, match=r"no entity sensor\.p1_meter_power_consumption .*ha_entity_prefix"):
        run(meter.read())


def test_rest_an_entity_that_went_away_is_named_and_all_are_asked_for_again(ha_rest: FakeRest) -> None:
    meter = HomeAssistantRestMeter(ha_rest.url, TOKEN, timeout_s=2)
    run(meter.read())
    kept = ha_rest.states
    ha_rest.states = edited(kept, P + "power_production", drop=True)  # renamed in Home Assistant
    with pytest.raises(MeterError, match=r"no entity sensor\.electricity_meter_power_production"):
        run(meter.read())
    ha_rest.states = kept
    same(run(meter.read()))
    assert ha_rest.asked(P + "energy_production_total") == 2  # the full round again


def test_rest_with_a_wrong_token_names_the_environment_variable(ha_rest: FakeRest) -> None:
    meter = HomeAssistantRestMeter(ha_rest.url, "expired", token_env="HA_TOKEN_FOR_DWARS", timeout_s=2)
    with pytest.raises(MeterError, match=r"refused the access token in HA_TOKEN_FOR_DWARS \(HTTP 401.*put it in "
                                         r"HA_TOKEN_FOR_DWARS"):
        run(meter.read())


def test_rest_an_answer_that_is_not_json_is_named(ha_rest: FakeRest) -> None:
    ha_rest.garbage.add(P + "power_production")
    with pytest.raises(MeterError, match=r"/api/states/sensor\.electricity_meter_power_production: the answer is "
                                         r"not JSON"):
        run(HomeAssistantRestMeter(ha_rest.url, TOKEN, timeout_s=2).read())


def test_rest_an_unreachable_home_assistant_names_the_address() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(MeterError, match=rf"{url}: unreachable .*ha_url"):
        run(HomeAssistantRestMeter(url, TOKEN, timeout_s=1).read())


# ------------------------------------------------------------------------------------------------ WebSocket API


class FakeHomeAssistant:
    """A WebSocket server on 127.0.0.1 that speaks Home Assistant's WebSocket API with the recorded messages."""

    def __init__(self, added: dict[str, Any] | None = None, unknown_command: bool = False) -> None:
        self.added = WS["entities_added"]["event"]["a"] if added is None else added
        self.unknown_command = unknown_command
        self.received: list[dict[str, Any]] = []
        self.logins = 0
        self.subscribers: list[tuple[ServerConnection, int]] = []
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        await ws.send(json.dumps(WS["auth_required"]))
        auth = json.loads(await ws.recv())
        self.received.append(auth)
        self.logins += 1
        if auth != {"type": "auth", "access_token": TOKEN}:
            await ws.send(json.dumps(WS["auth_invalid"]))
            return  # Home Assistant closes the connection after auth_invalid
        await ws.send(json.dumps(WS["auth_ok"]))
        async for raw in ws:
            msg = json.loads(raw)
            self.received.append(msg)
            if msg["type"] != "subscribe_entities" or self.unknown_command:
                await ws.send(json.dumps({**WS["unknown_command"], "id": msg["id"]}))
                continue
            await ws.send(json.dumps({**WS["subscribe_result"], "id": msg["id"]}))
            wanted = set(msg["entity_ids"])  # like Home Assistant: only the entities asked for
            added = {e: c for e, c in self.added.items() if e in wanted}
            await ws.send(json.dumps({"id": msg["id"], "type": "event", "event": {"a": added}}))
            self.subscribers.append((ws, msg["id"]))

    async def push(self, message: dict[str, Any]) -> None:
        for ws, sub in self.subscribers:
            await ws.send(json.dumps({**message, "id": sub}))

    async def drop(self) -> None:
        """Close every connection, as a restart of Home Assistant does."""
        subscribers, self.subscribers = self.subscribers, []
        for ws, _ in subscribers:
            await ws.close(1012, "restarting")


async def with_home_assistant(fake: FakeHomeAssistant, body: Callable[[FakeHomeAssistant], Awaitable[Any]]) -> Any:
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return await body(fake)


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.02)


def test_websocket_logs_in_subscribes_to_the_meters_entities_and_reads() -> None:
    async def body(fake: FakeHomeAssistant) -> MeterReading:
        async with HomeAssistantWebSocketMeter(fake.url, TOKEN, timeout_s=3) as meter:
            return await meter.read()

    fake = FakeHomeAssistant()
    reading = run(with_home_assistant(fake, body))
    same(reading)
    assert reading.source.startswith("homeassistant http://127.0.0.1:")
    assert fake.received[0] == {"type": "auth", "access_token": TOKEN}
    subscribe = fake.received[1]
    assert subscribe["type"] == "subscribe_entities" and subscribe["id"] == 1
    assert set(subscribe["entity_ids"]) == set(entity_ids())
    # The REST and the WebSocket meter make the same reading of the same states.
    assert reading == replace(reading_from_states(STATES), source=reading.source)


def test_websocket_a_pushed_change_is_in_the_next_read() -> None:
    async def body(fake: FakeHomeAssistant) -> tuple[MeterReading, MeterReading]:
        meter = HomeAssistantWebSocketMeter(fake.url, TOKEN, timeout_s=3)
        try:
            before = await meter.read()
            await fake.push(WS["kettle_on"])

            async def changed() -> bool:
                return (await meter.read()).import_kw > 0

            await until(changed)
            return before, await meter.read()
        finally:
            await meter.close()

    before, after = run(with_home_assistant(FakeHomeAssistant(), body))
    same(before)
    same(after, replace(EXPECTED, time=T2, import_kw=0.093, export_kw=0.0, phase_power_kw=(2.612, -1.263, -1.256),
                        phase_voltage_v=(229.8, 233.0, 232.1), phase_current_a=(11.0, 5.0, 5.0)))


def test_websocket_reconnects_after_home_assistant_dropped_the_connection() -> None:
    async def body(fake: FakeHomeAssistant) -> None:
        meter = HomeAssistantWebSocketMeter(fake.url, TOKEN, timeout_s=3, retry_s=0)
        try:
            same(await meter.read())
            await fake.drop()
            task = meter._task
            assert task is not None
            await asyncio.wait_for(asyncio.shield(task), 3)  # the meter noticed
            with pytest.raises(MeterError, match="the WebSocket connection was lost"):
                await meter.read()
            same(await meter.read())  # connected again
            assert (meter.connects, fake.logins) == (2, 2)
        finally:
            await meter.close()

    run(with_home_assistant(FakeHomeAssistant(), body))


def test_websocket_a_refused_token_names_the_variable_and_is_not_tried_again_at_once() -> None:
    async def body(fake: FakeHomeAssistant) -> None:
        meter = HomeAssistantWebSocketMeter(fake.url, "expired", token_env="HA_TOKEN_FOR_DWARS", timeout_s=3)
        try:
            with pytest.raises(MeterError, match=r"refused the access token in HA_TOKEN_FOR_DWARS \(auth_invalid: "
                                                 r"Invalid access token or password\).*put it in HA_TOKEN_FOR_DWARS"):
                await meter.read()
            with pytest.raises(MeterError, match=r"HA_TOKEN_FOR_DWARS.*the next try in [56]\d s"):
                await meter.read()
            assert fake.logins == 1  # Home Assistant counts each refusal as a failed login
        finally:
            await meter.close()

    run(with_home_assistant(FakeHomeAssistant(), body))


def test_websocket_a_missing_entity_is_named() -> None:
    added = {e: c for e, c in WS["entities_added"]["event"]["a"].items() if e != P + "power_production"}

    async def body(fake: FakeHomeAssistant) -> None:
        async with HomeAssistantWebSocketMeter(fake.url, TOKEN, timeout_s=3) as meter:
            with pytest.raises(MeterError, match=r"no entity sensor\.electricity_meter_power_production"):
                await meter.read()

    run(with_home_assistant(FakeHomeAssistant(added), body))


def test_websocket_a_home_assistant_without_subscribe_entities_suggests_rest() -> None:
    async def body(fake: FakeHomeAssistant) -> None:
        async with HomeAssistantWebSocketMeter(fake.url, TOKEN, timeout_s=3) as meter:
            with pytest.raises(MeterError, match=r"refused subscribe_entities \(unknown_command.*ha_api = \"rest\""):
                await meter.read()

    run(with_home_assistant(FakeHomeAssistant(unknown_command=True), body))


def test_websocket_an_unreachable_home_assistant_names_the_address() -> None:
    port = closed_port()
    meter = HomeAssistantWebSocketMeter(f"http://127.0.0.1:{port}", TOKEN, timeout_s=2)
    with pytest.raises(MeterError, match=rf"ws://127\.0\.0\.1:{port}/api/websocket: unreachable .*ha_url"):
        run(meter.read())


def test_websocket_a_server_that_sends_nothing_times_out_with_a_reason() -> None:
    async def main() -> None:
        async def silent(ws: ServerConnection) -> None:
            await ws.wait_closed()  # never says auth_required

        async with serve(silent, "127.0.0.1", 0) as server:
            url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            meter = HomeAssistantWebSocketMeter(url, TOKEN, timeout_s=0.5)
            try:
                with pytest.raises(MeterError, match=r"did not answer within 0\.5 s|no states from Home Assistant"):
                    await meter.read()
            finally:
                await meter.close()

    run(main())


# ------------------------------------------------------------------------------------------------ mqtt_statestream


def statestream(states: list[dict[str, Any]], base: str = "homeassistant", attributes: bool = True,
                timestamps: bool = True) -> list[tuple[str, str]]:
    """What Home Assistant's mqtt_statestream publishes (retained) for these states."""
    out = []
    for obj in states:
        topic = f"{base}/{obj['entity_id'].replace('.', '/', 1)}"
        out.append((f"{topic}/state", obj["state"]))
        if timestamps:
            out += [(f"{topic}/last_updated", obj["last_updated"]), (f"{topic}/last_changed", obj["last_changed"])]
        if attributes:
            out += [(f"{topic}/{key}", json.dumps(value)) for key, value in obj["attributes"].items()]
    return out


def publish(broker: Broker, messages: list[tuple[str, str]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ha-statestream-{time.monotonic_ns()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_mqtt_reads_the_retained_statestream(broker: Broker) -> None:
    publish(broker, statestream(STATES))

    async def main() -> MeterReading:
        meter = HomeAssistantMqttMeter(broker.host, broker.port, timeout_s=5)
        try:
            return await meter.read()
        finally:
            await meter.close()

    reading = run(main())
    # statestream publishes last_updated, not last_reported: power_production's is the newest.
    same(reading)
    assert reading.source == f"homeassistant mqtt://{broker.host}:{broker.port}/homeassistant"


def test_mqtt_without_attributes_and_timestamps_takes_the_default_units_and_the_arrival(broker: Broker) -> None:
    publish(broker, statestream(STATES, base="ha/stream", attributes=False, timestamps=False))

    async def main() -> MeterReading:
        meter = HomeAssistantMqttMeter(broker.host, broker.port, base_topic="ha/stream", timeout_s=5,
                                       clock=lambda: NOON)
        try:
            return await meter.read()
        finally:
            await meter.close()

    same(run(main()), replace(EXPECTED, time=NOON))


def test_mqtt_a_new_state_and_a_unit_in_w_are_in_the_next_read(broker: Broker) -> None:
    publish(broker, statestream(STATES))

    async def main() -> MeterReading:
        meter = HomeAssistantMqttMeter(broker.host, broker.port, timeout_s=5, clock=lambda: NOON)
        try:
            same(await meter.read())
            await asyncio.to_thread(publish, broker, [("homeassistant/sensor/electricity_meter_power_consumption/"
                                                       "unit_of_measurement", '"W"'),
                                                      ("homeassistant/sensor/electricity_meter_power_consumption/state",
                                                       "1874")])

            async def changed() -> bool:
                return (await meter.read()).import_kw > 0

            await until(changed)
            return await meter.read()
        finally:
            await meter.close()

    reading = run(main())
    assert reading.import_kw == pytest.approx(1.874)
    # Its last_updated (published after the state) has not come: the old one is not taken for the new state.
    assert reading.time == NOON


def test_mqtt_a_missing_entity_names_its_topic(broker: Broker) -> None:
    publish(broker, statestream(edited(STATES, P + "power_production", drop=True)))

    async def main() -> None:
        meter = HomeAssistantMqttMeter(broker.host, broker.port, timeout_s=5)
        try:
            with pytest.raises(MeterError, match=r"no entity sensor\.electricity_meter_power_production .*nothing on "
                                                 r"homeassistant/sensor/electricity_meter_power_production/state"):
                await meter.read()
        finally:
            await meter.close()

    run(main())


def test_mqtt_a_lost_broker_is_reported_and_the_meter_reconnects(broker: Broker) -> None:
    publish(broker, statestream(STATES))

    async def main() -> None:
        meter = HomeAssistantMqttMeter(broker.host, broker.port, timeout_s=8, retry_s=0.2)
        try:
            same(await meter.read())
            broker.stop()

            async def gone() -> bool:
                return not meter._subscribed.is_set()

            await until(gone)
            with pytest.raises(MeterError, match="the connection to the MQTT broker was lost"):
                await meter.read()
            await asyncio.to_thread(broker.start, broker.port)
            await asyncio.to_thread(publish, broker, statestream(STATES))  # no persistence: publish again
            same(await meter.read())
        finally:
            await meter.close()

    run(main())


def test_mqtt_an_unreachable_broker_is_named() -> None:
    port = closed_port()

    async def main() -> None:
        meter = HomeAssistantMqttMeter("127.0.0.1", port, timeout_s=1)
        try:
            with pytest.raises(MeterError, match=rf"not connected to the MQTT broker at 127\.0\.0\.1:{port}"):
                await meter.read()
        finally:
            await meter.close()

    run(main())


# ------------------------------------------------------------------------------------------------ from the config


@pytest.mark.parametrize(("settings_", "kind"), [
    ({"meter": "dsmr_tcp", "meter_host": "192.168.1.20", "meter_port": 2001}, DsmrTcpMeter),
    ({"meter": "dsmr_serial", "meter_device": "/dev/ttyUSB1"}, DsmrSerialMeter),
    ({"meter": "homewizard", "meter_host": "192.168.1.30"}, HomeWizardMeter),
    ({"meter": "homeassistant"}, HomeAssistantWebSocketMeter),
    ({"meter": "homeassistant", "ha_api": "websocket", "ha_url": "https://ha.example.nl"},
     HomeAssistantWebSocketMeter),
    ({"meter": "homeassistant", "ha_api": "rest", "ha_entity_prefix": "sensor.p1_"}, HomeAssistantRestMeter),
    ({"meter": "homeassistant", "ha_api": "mqtt", "mqtt_host": "10.0.0.9", "mqtt_port": 1884,
      "ha_statestream_topic": "statestream", "mqtt_username": "dwars"}, HomeAssistantMqttMeter),
])
def test_open_configured_meter_follows_the_config(settings_: dict[str, Any], kind: type,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWARS_HA_TOKEN", " token-from-env\n")
    monkeypatch.setenv("DWARS_MQTT_PASSWORD", "broker-secret")
    r = RuntimeConfig(**settings_)
    meter: Any = open_configured_meter(r, timeout_s=7.5)
    assert type(meter) is kind
    assert meter.timeout_s == 7.5
    if kind in (HomeAssistantWebSocketMeter, HomeAssistantRestMeter):
        assert meter.token == "token-from-env" and meter.url == r.ha_url and meter.entity_prefix == r.ha_entity_prefix
    if kind is HomeAssistantWebSocketMeter:
        assert meter.ws_url == websocket_url(r.ha_url)
    if kind is HomeAssistantMqttMeter:
        assert (meter.host, meter.port, meter.base_topic) == ("10.0.0.9", 1884, "statestream")
        assert (meter.username, meter.password) == ("dwars", "broker-secret")
    if kind is DsmrTcpMeter:
        assert (meter.host, meter.port) == ("192.168.1.20", 2001)
    if kind is DsmrSerialMeter:
        assert meter.device == "/dev/ttyUSB1"


def test_open_configured_meter_without_a_token_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HA_LONG_LIVED", raising=False)
    for api in ("websocket", "rest"):
        with pytest.raises(MeterError, match=r"environment variable HA_LONG_LIVED holds no access token"):
            open_configured_meter(RuntimeConfig(meter="homeassistant", ha_api=api, ha_token_env="HA_LONG_LIVED"))
    # mqtt_statestream needs the broker, not a token.
    meter = open_configured_meter(RuntimeConfig(meter="homeassistant", ha_api="mqtt", mqtt_host="10.0.0.9",
                                                ha_token_env="HA_LONG_LIVED"))
    assert isinstance(meter, HomeAssistantMqttMeter)
    with pytest.raises(MeterError, match="needs mqtt_host"):
        open_configured_meter(RuntimeConfig(meter="homeassistant", ha_api="mqtt"))
    with pytest.raises(MeterError, match="must be one of"):
        open_configured_meter(RuntimeConfig(meter="none"))
    with pytest.raises(MeterError, match="open it with open_configured_meter"):
        open_meter("homeassistant")


def test_open_configured_meter_reads_home_assistant_over_rest(ha_rest: FakeRest,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWARS_HA_TOKEN", TOKEN)
    meter = open_configured_meter(RuntimeConfig(meter="homeassistant", ha_api="rest", ha_url=ha_rest.url), 2.0)
    same(run(meter.read()))
