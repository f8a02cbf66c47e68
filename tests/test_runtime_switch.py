"""The boiler switch: the MQTT relay command against a real mosquitto broker on 127.0.0.1 (watched by a second real
client, and answered by a relay that speaks Tasmota's topics), the rate limit, and the simulated switch."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from helpers_mqtt import WAIT_S, Broker, Watcher
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from dwars.config import BoilerConfig, RuntimeConfig
from dwars.runtime.sim_inverter import _free_port
from dwars.runtime.switch import MqttSwitch, SimulatedSwitch, SwitchError, open_switch, state_topic_for

T0 = pd.Timestamp("2024-06-03 10:00", tz="UTC")
TOPIC = "cmnd/boiler/POWER"


@pytest.fixture
def watcher(broker: Broker) -> Iterator[Watcher]:
    w = Watcher(broker, topics=("cmnd/#", "stat/#"))
    try:
        yield w
    finally:
        w.close()


class Clock:
    """Simulated time for the rate limit: moves only when told."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> pd.Timestamp:
        return self.t

    def wait(self, seconds: float) -> None:
        self.t += pd.Timedelta(seconds=seconds)


class TasmotaRelay:
    """A relay as Tasmota runs it: ``cmnd/<device>/POWER`` ON/OFF switches it and answers on ``stat/<device>/POWER``;
    an empty command only answers."""

    def __init__(self, broker: Broker, device: str = "boiler", on: bool = False) -> None:
        self.on = on
        self.device = device
        self.switched = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tasmota-{device}")
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_connect = lambda c, *a: c.subscribe(f"cmnd/{device}/POWER", 1)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(WAIT_S), "the relay could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        command = msg.payload.decode().strip().upper()
        if command in ("ON", "OFF"):
            self.switched += (command == "ON") != self.on
            self.on = command == "ON"
        client.publish(f"stat/{self.device}/POWER", "ON" if self.on else "OFF", qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def started(broker: Broker, clock: Clock, **options: Any) -> MqttSwitch:
    switch = MqttSwitch(broker.host, broker.port, TOPIC, now=clock, **options).start()
    assert switch.wait_connected(WAIT_S), f"the switch did not connect to {broker.host}:{broker.port}"
    return switch


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {WAIT_S} s"
        time.sleep(0.01)


# --- over a real broker -------------------------------------------------------------------------------------------

def test_commands_go_out_with_qos_1_not_retained_and_at_most_one_switch_per_interval(broker: Broker,
                                                                                   watcher: Watcher) -> None:
    clock = Clock()
    switch = started(broker, clock, min_toggle_s=300.0, resend_s=600.0, state_topic="")  # no Tasmota query
    try:
        assert asyncio.run(switch.set(True)) is True
        assert watcher.wait(TOPIC, "ON") == "ON"
        assert [retain for t, _, retain in watcher.messages if t == TOPIC] == [False]
        clock.wait(120)  # two minutes later the surplus is gone: too soon to switch again
        assert asyncio.run(switch.set(False)) is True and switch.state is True
        assert asyncio.run(switch.set(True)) is True  # the same command again: nothing to send yet
        clock.wait(181)  # 301 s after the switch on
        assert asyncio.run(switch.set(False)) is False
        assert watcher.wait(TOPIC, "OFF", after=1) == "OFF"
        assert [p for t, p, _ in watcher.messages if t == TOPIC] == ["ON", "OFF"]
        assert switch.history == [(T0, True), (T0 + pd.Timedelta(seconds=301), False)]
        clock.wait(600)  # an unchanged command is sent again after resend_s (a relay that restarted gets it)
        assert asyncio.run(switch.set(False)) is False
        assert watcher.wait(TOPIC, "OFF", after=2) == "OFF" and len(switch.history) == 2
    finally:
        switch.close()
    late = Watcher(broker, topics=("cmnd/#",))  # nothing is left on the broker for a relay that connects later
    try:
        time.sleep(0.2)
        assert late.messages == []
    finally:
        late.close()


def test_fail_safe_switches_off_at_once(broker: Broker, watcher: Watcher) -> None:
    clock = Clock()
    switch = started(broker, clock)
    try:
        asyncio.run(switch.set(True))
        clock.wait(5)
        asyncio.run(switch.fail_safe())
        assert watcher.wait(TOPIC, "OFF") == "OFF" and switch.state is False
    finally:
        switch.close()


def test_a_tasmota_relay_is_read_back_and_asked_for_its_state_at_connect(broker: Broker) -> None:
    relay = TasmotaRelay(broker, on=True)  # on already (its power-on state, or a hand on the button)
    clock = Clock()
    switch = started(broker, clock, min_toggle_s=0.0)
    try:
        assert switch.state_topic == "stat/boiler/POWER"
        wait_until(lambda: switch.reported is True, "the relay's answer to the empty command")
        asyncio.run(switch.set(False))
        wait_until(lambda: switch.reported is False, "the relay's OFF")
        assert relay.on is False and relay.switched == 1
        clock.wait(1)
        asyncio.run(switch.set(True))
        wait_until(lambda: switch.reported is True, "the relay's ON")
        assert relay.on is True and switch.reported_at == T0 + pd.Timedelta(seconds=1)
    finally:
        switch.close()
        relay.close()


def test_after_a_broker_restart_the_switch_reconnects_and_commands_again(broker: Broker) -> None:
    relay = TasmotaRelay(broker)
    clock = Clock()
    switch = started(broker, clock, min_toggle_s=0.0)
    try:
        wait_until(lambda: switch.reported is False, "the first read-back")
        broker.stop()
        wait_until(lambda: not switch.client.is_connected(), "the switch noticing the broker is gone")
        with pytest.raises(SwitchError, match=r"switch cmnd/boiler/POWER on MQTT broker 127.0.0.1:\d+: not "
                                              "connected to the broker; the boiler stays as it is"):
            asyncio.run(switch.set(True))
        assert switch.state is None and switch.history == []  # nothing was switched
        broker.start(broker.port)
        relay.close()
        relay = TasmotaRelay(broker)
        assert switch.wait_connected(3 * WAIT_S), "no reconnect"
        asyncio.run(switch.set(True))
        wait_until(lambda: relay.on and switch.reported is True, "the relay switched on after the restart")
    finally:
        switch.close()
        relay.close()


def test_no_broker_is_a_clear_error() -> None:
    switch = MqttSwitch("127.0.0.1", _free_port("127.0.0.1"), TOPIC).start()
    try:
        assert not switch.wait_connected(0.3)
        with pytest.raises(SwitchError, match="not connected to the broker"):
            asyncio.run(switch.set(True))
        assert switch.state is None
    finally:
        switch.close()


# --- without a broker ---------------------------------------------------------------------------------------------

def test_state_topics_follow_tasmota_and_shelly() -> None:
    assert state_topic_for("cmnd/boiler/POWER") == "stat/boiler/POWER"
    assert state_topic_for("cmnd/kelder/boiler/POWER2") == "stat/kelder/boiler/POWER2"
    assert state_topic_for("shellies/shelly1-98CDAC/relay/0/command") == "shellies/shelly1-98CDAC/relay/0"
    assert state_topic_for("home/boiler/set") is None
    assert MqttSwitch("127.0.0.1", 1883, "home/boiler/set").state_topic is None
    assert MqttSwitch("127.0.0.1", 1883, TOPIC, state_topic="").state_topic is None
    with pytest.raises(ValueError, match=r"topic = 'cmnd/\+/POWER': must be a plain MQTT topic"):
        MqttSwitch("127.0.0.1", 1883, "cmnd/+/POWER")
    with pytest.raises(ValueError, match="payload_on = payload_off = 'ON'"):
        MqttSwitch("127.0.0.1", 1883, TOPIC, payload_on="ON", payload_off="ON")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 900.0), st.booleans()), max_size=40), st.floats(0.0, 900.0))
def test_the_switch_never_toggles_faster_than_its_limit(requests: list[tuple[float, bool]], limit_s: float) -> None:
    clock = Clock()
    switch = SimulatedSwitch(min_toggle_s=limit_s, now=clock)

    async def run() -> None:
        for wait_s, on in requests:
            clock.wait(wait_s)
            before = switch.state
            last = switch.history[-1][0] if switch.history else None
            held = (before is not None and on != before and last is not None
                    and (clock.t - last).total_seconds() < limit_s)
            assert await switch.set(on) == (before if held else on) == switch.state

    asyncio.run(run())
    times = [t for t, _ in switch.history]
    assert all((b - a).total_seconds() >= limit_s - 1e-6 for a, b in itertools.pairwise(times))
    states = [on for _, on in switch.history]
    assert all(a != b for a, b in itertools.pairwise(states))  # every entry is a change


def test_the_simulated_switch_keeps_its_history_on_the_clock() -> None:
    clock = Clock()
    switch = SimulatedSwitch(min_toggle_s=300.0, resend_s=900.0, now=clock)

    async def run() -> None:
        await switch.set(True)
        clock.wait(100)
        await switch.set(False)  # held back
        clock.wait(300)
        await switch.set(False)
        clock.wait(100)
        await switch.set(False)  # unchanged, not due: not even sent
        await switch.fail_safe()  # forced: sent, no change

    asyncio.run(run())
    assert switch.history == [(T0, True), (T0 + pd.Timedelta(seconds=400), False)]
    assert [on for _, on in switch.sent] == [True, False, False]
    assert switch.on_at(T0 + pd.Timedelta(seconds=399)) and not switch.on_at(T0 + pd.Timedelta(seconds=400))
    assert not switch.on_at(T0 - pd.Timedelta(seconds=1))


def test_open_switch_takes_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = RuntimeConfig(mqtt_host="10.0.0.5", mqtt_port=1884, mqtt_username="dwars")
    monkeypatch.setenv(runtime.mqtt_password_env, "geheim")
    assert open_switch(None, runtime) is None and open_switch(BoilerConfig(), runtime) is None
    assert isinstance(open_switch(BoilerConfig(switch="simulated"), runtime), SimulatedSwitch)
    shelly = open_switch(BoilerConfig(switch="mqtt", mqtt_topic="shellies/boiler/relay/0/command", payload_on="on",
                                      payload_off="off"), runtime, min_toggle_s=60.0)
    assert isinstance(shelly, MqttSwitch)
    assert (shelly.host, shelly.port, shelly.topic, shelly.payload_on, shelly.payload_off) == (
        "10.0.0.5", 1884, "shellies/boiler/relay/0/command", "on", "off")
    assert shelly.state_topic == "shellies/boiler/relay/0" and shelly.min_toggle_s == 60.0
    assert (shelly.client._username, shelly.client._password) == (b"dwars", b"geheim")
    with pytest.raises(ValueError, match=r'boiler.switch = "mqtt": needs an MQTT broker, runtime.mqtt_host = ""'):
        open_switch(BoilerConfig(switch="mqtt"), RuntimeConfig())
