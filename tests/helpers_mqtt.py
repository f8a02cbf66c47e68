"""A real MQTT broker (mosquitto on 127.0.0.1) and a real watching client, for the tests that talk MQTT (Home
Assistant, the boiler switch, the runtime app)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

# /usr/sbin is where Debian puts mosquitto, and it is not on every user's PATH.
MOSQUITTO_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
WAIT_S = 5.0


def find_mosquitto(extra_dirs: tuple[str, ...] = MOSQUITTO_DIRS, path: str | None = None) -> str:
    found = shutil.which("mosquitto", path=path)
    for directory in extra_dirs:
        candidate = Path(directory) / "mosquitto"
        if found is None and candidate.is_file() and os.access(candidate, os.X_OK):
            found = str(candidate)
    if found is None:
        pytest.fail("mosquitto is not installed: the MQTT tests (Home Assistant, the boiler switch) need a real "
                    "broker. Install it with `apt-get install mosquitto` (.ci/run does this).", pytrace=False)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """mosquitto on 127.0.0.1 with a minimal config: anonymous, no persistence (a restart forgets everything)."""

    def __init__(self, directory: Path) -> None:
        self.exe = find_mosquitto()
        self.directory = directory
        self.host = "127.0.0.1"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "mosquitto.log"

    def start(self, port: int | None = None) -> None:
        for _ in range(5):  # another process may grab a free port between our look and mosquitto's bind
            self.port = port or free_port()
            conf = self.directory / "mosquitto.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            with open(self.log_path, "ab") as out:
                self.process = subprocess.Popen([self.exe, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
            if self._accepts():
                return
            self.stop()
            if port is not None:
                time.sleep(0.2)
        pytest.fail(f"mosquitto did not start on 127.0.0.1:{self.port}:\n{self.log_path.read_text()}")

    def _accepts(self) -> bool:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


class Watcher:
    """A second MQTT client that records every message on ``topics``; it subscribes again after each reconnect."""

    def __init__(self, broker: Broker, topics: tuple[str, ...] = ("homeassistant/#", "dwars/#")) -> None:
        self.topics = topics
        self.messages: list[tuple[str, str, bool]] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{id(self)}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(WAIT_S), "the watcher could not subscribe"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))
            self.cond.notify_all()

    def count(self, topic: str) -> int:
        with self.cond:
            return sum(1 for t, _, _ in self.messages if t == topic)

    def wait(self, topic: str, payload: str | Callable[[str], bool] | None = None, after: int = 0) -> str:
        """The first payload on ``topic`` (among those after the first ``after``) matching ``payload``."""
        def match() -> str | None:
            seen = [p for t, p, _ in self.messages if t == topic][after:]
            for p in seen:
                if payload is None or (payload(p) if callable(payload) else p == payload):
                    return p
            return None

        with self.cond:
            found = self.cond.wait_for(match, WAIT_S)
            if found is None:
                got = [p for t, p, _ in self.messages if t == topic]
                raise AssertionError(f"no message {payload!r} on {topic} within {WAIT_S} s; got {got}")
            return found

    def latest(self) -> dict[str, str]:
        with self.cond:
            return {t: p for t, p, _ in self.messages}

    def send(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
