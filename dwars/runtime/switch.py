"""The boiler's switch: a relay dwars turns on to store a solar surplus as hot water, and off again.

:class:`MqttSwitch` publishes ``payload_on``/``payload_off`` to a command topic (a Tasmota or Shelly relay, or a Home
Assistant automation listening on it), with QoS 1 and **not retained**: a retained command would be handed to the
relay again at every reconnect of the relay, long after dwars decided it (Tasmota's own advice: never retain
``cmnd`` topics). So a relay that restarts goes to its own power-on state, and dwars sends its command again (see
``resend_s``); a dwars that dies leaves nothing behind on the broker.

Read-back: for the two common conventions the relay's own state topic is followed and shown as
:attr:`MqttSwitch.reported` (informational: dwars does not fight a home owner who switched by hand; it only resends
its command every ``resend_s``):

- Tasmota: command ``cmnd/<device>/POWER<n>``, state ``stat/<device>/POWER<n>`` (``ON``/``OFF``); at connect an
  empty command asks the relay for its state.
- Shelly (Gen1): command ``shellies/<id>/relay/<n>/command``, state ``shellies/<id>/relay/<n>`` (``on``/``off``).

Switching wear. A relay is not toggled more than once per ``min_toggle_s`` (default 300 s): the mechanical relay of a
Shelly or Sonoff is rated for about 10^5 switchings under a resistive load, and a passing cloud can otherwise flip
a 2 kW element every couple of minutes for hours; a heat-pump boiler's compressor wants minutes between starts too.
A command held back by this is not lost: :meth:`Switch.set` returns the state still in force and the caller asks
again later. :meth:`Switch.fail_safe` (off, when dwars stops or goes to safe mode) is the one exception: a boiler
left boosting with nobody watching costs more than one early switch.

:class:`SimulatedSwitch` is the same switch without a relay: it records what it was told, with the times (for
dry runs and tests). :func:`open_switch` makes the one ``[boiler] switch`` names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pandas as pd
from paho.mqtt.enums import CallbackAPIVersion

from dwars.config import BoilerConfig, RuntimeConfig
from dwars.errors import DwarsError

log = logging.getLogger(__name__)

MIN_TOGGLE_S = 300.0
RESEND_S = 300.0
_TASMOTA = re.compile(r"^cmnd/(.+)/(POWER\d*)$", re.IGNORECASE)
_SHELLY = re.compile(r"^(shellies/[^/]+/relay/\d+)/command$")


class SwitchError(DwarsError):
    """The switch could not be told (no broker, no acknowledgement)."""


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def state_topic_for(command_topic: str) -> str | None:
    """The relay's own state topic for a Tasmota or Shelly (Gen1) command topic (None for any other)."""
    if m := _TASMOTA.match(command_topic):
        return f"stat/{m.group(1)}/{m.group(2)}"
    if m := _SHELLY.match(command_topic):
        return m.group(1)
    return None


class Switch:
    """An on/off switch with a toggle rate limit and a history (see the module text); subclasses send.

    Parameters
    ----------
    min_toggle_s : the least time between two changes of state, s.
    resend_s : an unchanged command is sent again when this long has passed since it was last sent, s.
    now : the current time (UTC); a simulated clock's in dry runs.
    """

    def __init__(self, min_toggle_s: float = MIN_TOGGLE_S, resend_s: float = RESEND_S,
                 now: Callable[[], pd.Timestamp] = _utc_now) -> None:
        if not min_toggle_s >= 0:
            raise ValueError(f"min_toggle_s = {min_toggle_s}: must be >= 0")
        self.min_toggle_s = float(min_toggle_s)
        self.resend_s = float(resend_s)
        self.now = now
        self.state: bool | None = None  # last commanded (None: nothing yet)
        self.history: list[tuple[pd.Timestamp, bool]] = []  # (when, on) of every change of state
        self.sends = 0
        self._last_toggle: pd.Timestamp | None = None
        self._last_send: pd.Timestamp | None = None

    def wait_s(self, on: bool) -> float:
        """Seconds until switching to ``on`` is allowed (0: now)."""
        if self.state is None or on == self.state or self._last_toggle is None:
            return 0.0
        return max(self.min_toggle_s - (self.now() - self._last_toggle).total_seconds(), 0.0)

    async def set(self, on: bool, force: bool = False) -> bool:
        """Switch on or off; returns the state in force afterwards (the old one when the rate limit held the change
        back). An unchanged command is sent again only after ``resend_s``; ``force`` ignores both limits.

        Raises
        ------
        SwitchError
            the command could not be delivered; the state is unchanged.
        """
        on = bool(on)
        now = self.now()
        changed = on != self.state
        if changed and not force and (wait := self.wait_s(on)) > 0:
            log.info("%s: not switched %s yet, %.0f s after the last switch (at most one per %.0f s)", self,
                     "on" if on else "off", self.min_toggle_s - wait, self.min_toggle_s)
            return bool(self.state)
        due = self._last_send is None or (now - self._last_send).total_seconds() >= self.resend_s
        if not changed and not due and not force:
            return on
        await self._send(on)
        self.sends += 1
        self._last_send = now
        if changed:
            self.state, self._last_toggle = on, now
            self.history.append((now, on))
            log.info("%s: switched %s", self, "on" if on else "off")
        return on

    async def fail_safe(self) -> None:
        """Off, whatever the rate limit says (dwars stops or enters safe mode)."""
        await self.set(False, force=True)

    def start(self) -> Switch:
        """Start talking to the switch (returns self)."""
        return self

    def close(self) -> None:
        """Stop talking to it (the relay keeps its state)."""

    async def _send(self, on: bool) -> None:
        raise NotImplementedError


class SimulatedSwitch(Switch):
    """A switch that only records what it was told: :attr:`history` (changes) and :attr:`sent` (every command)."""

    def __init__(self, min_toggle_s: float = MIN_TOGGLE_S, resend_s: float = RESEND_S,
                 now: Callable[[], pd.Timestamp] = _utc_now) -> None:
        super().__init__(min_toggle_s, resend_s, now)
        self.sent: list[tuple[pd.Timestamp, bool]] = []

    def __str__(self) -> str:
        return "simulated switch"

    async def _send(self, on: bool) -> None:
        self.sent.append((self.now(), on))

    def on_at(self, when: pd.Timestamp) -> bool:
        """Whether it was on at ``when`` (off before the first command)."""
        state = False
        for t, on in self.history:
            if t > when:
                break
            state = on
        return state


class MqttSwitch(Switch):
    """A relay behind an MQTT command topic (see the module text).

    Parameters
    ----------
    host, port : the MQTT broker.
    topic : the command topic (``cmnd/boiler/POWER``).
    payload_on, payload_off : what the relay takes for on and off (Tasmota ``ON``/``OFF``, Shelly ``on``/``off``).
    username, password : broker login, when it needs one.
    state_topic : the relay's state topic; None: derived for Tasmota and Shelly topics (:func:`state_topic_for`),
        ``""``: none.
    min_toggle_s, resend_s, now : see :class:`Switch`.
    publish_timeout_s : how long :meth:`set` waits for the broker's acknowledgement (QoS 1).
    """

    def __init__(self, host: str, port: int, topic: str, payload_on: str = "ON", payload_off: str = "OFF",
                 username: str | None = None, password: str | None = None, state_topic: str | None = None,
                 min_toggle_s: float = MIN_TOGGLE_S, resend_s: float = RESEND_S,
                 now: Callable[[], pd.Timestamp] = _utc_now, publish_timeout_s: float = 5.0,
                 keepalive_s: int = 30) -> None:
        super().__init__(min_toggle_s, resend_s, now)
        if not topic or any(c in topic for c in "+#"):
            raise ValueError(f"topic = {topic!r}: must be a plain MQTT topic (no wildcards + or #)")
        if payload_on == payload_off:
            raise ValueError(f"payload_on = payload_off = {payload_on!r}: the relay could not tell them apart")
        self.host, self.port, self.topic = host, int(port), topic
        self.payload_on, self.payload_off = payload_on, payload_off
        self.state_topic = state_topic_for(topic) if state_topic is None else (state_topic or None)
        self.publish_timeout_s = float(publish_timeout_s)
        self.keepalive_s = int(keepalive_s)
        self.reported: bool | None = None  # what the relay last said (None: nothing yet, or no state topic)
        self.reported_at: pd.Timestamp | None = None
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dwars-switch-{os.getpid()}-{id(self)}")
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def __str__(self) -> str:
        return f"switch {self.topic} on MQTT broker {self.host}:{self.port}"

    def start(self) -> MqttSwitch:
        """Connect in the background (paho's network thread retries until the broker answers); returns self."""
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self.client.loop_start()
        return self

    def wait_connected(self, timeout_s: float = 5.0) -> bool:
        """True once connected, False when ``timeout_s`` passed first."""
        return self._connected.wait(timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()

    async def _send(self, on: bool) -> None:
        if not self.client.is_connected():
            raise SwitchError(f"{self}: not connected to the broker; the boiler stays as it is")
        payload = self.payload_on if on else self.payload_off
        info = self.client.publish(self.topic, payload, qos=1, retain=False)
        with contextlib.suppress(RuntimeError, ValueError):  # paho raises these when the connection drops meanwhile
            await asyncio.to_thread(info.wait_for_publish, self.publish_timeout_s)
        if not info.is_published():
            raise SwitchError(f"{self}: the broker did not acknowledge {payload!r} within "
                              f"{self.publish_timeout_s:g} s; the boiler may not have switched")

    # -- paho callbacks (network thread) ----------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            log.error("%s refused the connection: %s (check the user name and password)", self, reason_code)
            return
        if self.state_topic is not None:
            client.subscribe(self.state_topic, qos=1)
            if _TASMOTA.match(self.topic):  # a Tasmota command without payload answers with the state
                client.publish(self.topic, "", qos=1, retain=False)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._connected.clear()
        if reason_code.is_failure:
            log.warning("%s: connection lost (%s); retrying in the background", self, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = message.payload.decode("utf-8", errors="replace").strip().lower()
        if payload in (self.payload_on.lower(), "on", "1"):
            self.reported = True
        elif payload in (self.payload_off.lower(), "off", "0"):
            self.reported = False
        else:
            return
        self.reported_at = self.now()


def open_switch(boiler_cfg: BoilerConfig | None, runtime_cfg: RuntimeConfig, **options: Any) -> Switch | None:
    """The switch of ``[boiler] switch`` (None for ``none`` or no ``[boiler]``), not started yet: call
    :meth:`Switch.start`. ``mqtt`` uses ``[runtime]``'s broker (``mqtt_host``, ``mqtt_port``, ``mqtt_username``, the
    password from the environment variable ``mqtt_password_env``). ``options`` go to the switch (min_toggle_s,
    resend_s, now, ...)."""
    if boiler_cfg is None or boiler_cfg.switch == "none":
        return None
    if boiler_cfg.switch == "simulated":
        return SimulatedSwitch(**options)
    if not runtime_cfg.mqtt_host:
        raise ValueError('boiler.switch = "mqtt": needs an MQTT broker, runtime.mqtt_host = "" (set it to the '
                         "broker's address)")
    return MqttSwitch(runtime_cfg.mqtt_host, runtime_cfg.mqtt_port, boiler_cfg.mqtt_topic, boiler_cfg.payload_on,
                      boiler_cfg.payload_off, username=runtime_cfg.mqtt_username or None,
                      password=os.environ.get(runtime_cfg.mqtt_password_env) or None, **options)
