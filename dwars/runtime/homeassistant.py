"""Home Assistant over MQTT discovery: dwars shows what it does, and the home owner changes profile and goals.

:class:`HomeAssistantBridge` connects to the MQTT broker Home Assistant uses (paho-mqtt 2.x, on its own network
thread) and announces one device with these entities, each through a retained discovery config on
``<discovery_prefix>/<component>/<node_id>/<object_id>/config``:

==============================  =====================================================================
entity                          what it shows
==============================  =====================================================================
sensors                         mode, reason, battery power setpoint (kW), SoC (%), reserve and endpoint
                                target in force (%), endpoint hour, next grid-charge block (start, end),
                                cost today, cost today without battery, saving today (EUR), shield
                                interventions today, controller, last decision
binary_sensor ``safe_mode``     on while dwars runs its fallback
sensor ``grid_voltage``         the rolling 10-minute mean grid voltage (V), with ``[voltage]``
binary_sensor ``high_voltage``  on while high-voltage mode keeps the solar surplus at home
select ``profile``              ``strategy.profile`` of the config file
number ``reserve``              ``battery.reserve_pct``
number ``endpoint_soc``         ``goals.endpoint_soc_pct``
number ``endpoint_hour``        ``goals.endpoint_hour`` (local clock)
==============================  =====================================================================

States go to ``<node_id>/<object_id>/state`` (retained), commands come in on ``<node_id>/<object_id>/set``.
Availability is ``<node_id>/availability``: ``online`` once connected, ``offline`` on :meth:`close`, and the
broker sends ``offline`` itself (the last will) when the connection dies.

A command from Home Assistant changes the config file only when the whole file still passes the config
validator with the new value (:func:`write_config_value`): only that key is edited (comments and layout kept),
the result is loaded with :func:`dwars.config.load_config`, written to a temporary file next to it, synced,
the old file kept as ``<name>.bak``, and swapped in with ``os.replace``, so a power cut leaves either the old or
the new file, never half of one. A refused value changes nothing; the entity gets the old value back and the log
says why in plain words.

Every (re)connect, and every restart of Home Assistant (its ``<discovery_prefix>/status`` birth message),
publishes discovery, availability and the last known states again: a broker without persistence forgets them.

Home Assistant's MQTT discovery format: https://www.home-assistant.io/integrations/mqtt/ (discovery, sensor,
binary_sensor, select, number); sensor device and state classes: https://developers.home-assistant.io/docs/core/entity/sensor/
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pandas as pd
import tomlkit
from paho.mqtt.enums import CallbackAPIVersion
from tomlkit.exceptions import TOMLKitError

from dwars import __version__
from dwars.config import PROFILES, ConfigError, Installation, installation_from_dict, key_range, load_config
from dwars.runtime.status import RuntimeStatus

log = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
#: Home Assistant refuses sensor states longer than this many characters.
MAX_STATE_LEN = 255
#: The payload an MQTT sensor or number reads as "unknown" (Home Assistant's PAYLOAD_NONE).
NONE_PAYLOAD = "None"
_NODE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------------------------------
# Entities, described declaratively.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity: how it is announced, and (for sensors) which status value it shows.

    Attributes
    ----------
    component : ``sensor``, ``binary_sensor``, ``select`` or ``number``.
    object_id : unique within the node; part of the topics and of ``unique_id``.
    name : shown in Home Assistant after the device name.
    value : for sensors, the state payload from a :class:`RuntimeStatus`; None for the controls.
    extra : further discovery keys (unit, device and state class, icon, options, min/max/step, templates).
    """

    component: str
    object_id: str
    name: str
    value: Callable[[RuntimeStatus, str], str] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Control:
    """A config key Home Assistant may change: the entity and the TOML ``section.key`` behind it."""

    entity: Entity
    section: str
    key: str

    @property
    def where(self) -> str:
        return f"{self.section}.{self.key}"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(float(value)):
        return NONE_PAYLOAD
    return f"{round(float(value), digits):g}"


def _stamp(value: pd.Timestamp | None) -> str:
    return NONE_PAYLOAD if value is None else pd.Timestamp(value).isoformat()


def _cost(amount_eur: float, status: RuntimeStatus, tz: str) -> str:
    # A daily total: Home Assistant needs the instant it restarted from zero (local midnight) to keep statistics.
    midnight = pd.Timestamp(status.time).tz_convert(tz).normalize().tz_convert("UTC")
    return json.dumps({"value": round(float(amount_eur), 4), "last_reset": midnight.isoformat()})


_COST = {"unit_of_measurement": "EUR", "device_class": "monetary", "state_class": "total",
         "value_template": "{{ value_json.value }}", "last_reset_value_template": "{{ value_json.last_reset }}"}
_TARGET = {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:battery-lock"}

SENSORS: tuple[Entity, ...] = (
    Entity("sensor", "mode", "Mode", lambda s, tz: s.mode, {"icon": "mdi:battery-sync"}),
    Entity("sensor", "reason", "Reason", lambda s, tz: s.reason[:MAX_STATE_LEN], {"icon": "mdi:comment-text"}),
    Entity("sensor", "power", "Battery power setpoint", lambda s, tz: _num(s.power_kw),
           {"unit_of_measurement": "kW", "device_class": "power", "state_class": "measurement"}),
    Entity("sensor", "soc", "Battery state of charge", lambda s, tz: _num(s.soc_pct, 1),
           {"unit_of_measurement": "%", "device_class": "battery", "state_class": "measurement"}),
    Entity("sensor", "reserve_target", "Reserve in force", lambda s, tz: _num(s.reserve_pct, 1), _TARGET),
    Entity("sensor", "endpoint_target", "Endpoint target in force", lambda s, tz: _num(s.endpoint_pct, 1),
           _TARGET),
    Entity("sensor", "endpoint_time", "Endpoint hour",
           lambda s, tz: "off" if s.endpoint_hour is None else f"{int(s.endpoint_hour):02d}:00",
           {"icon": "mdi:clock-end"}),
    Entity("sensor", "next_charge_start", "Next grid charge start", lambda s, tz: _stamp(s.next_charge_start),
           {"device_class": "timestamp"}),
    Entity("sensor", "next_charge_end", "Next grid charge end", lambda s, tz: _stamp(s.next_charge_end),
           {"device_class": "timestamp"}),
    Entity("sensor", "cost_today", "Cost today", lambda s, tz: _cost(s.cost_today_eur, s, tz), _COST),
    Entity("sensor", "cost_today_without_battery", "Cost today without battery",
           lambda s, tz: _cost(s.cost_today_without_battery_eur, s, tz), _COST),
    Entity("sensor", "saving_today", "Saving today", lambda s, tz: _cost(s.saving_today_eur, s, tz), _COST),
    # total_increasing: Home Assistant treats the drop to 0 at midnight as a new cycle.
    Entity("sensor", "shield_interventions_today", "Shield interventions today",
           lambda s, tz: str(int(s.shield_interventions_today)),
           {"state_class": "total_increasing", "icon": "mdi:shield-alert"}),
    Entity("binary_sensor", "safe_mode", "Safe mode", lambda s, tz: "ON" if s.safe_mode else "OFF",
           {"device_class": "problem", "payload_on": "ON", "payload_off": "OFF"}),
    Entity("sensor", "grid_voltage", "Grid voltage (10-min mean)",
           lambda s, tz: _num(s.grid_voltage_v, 1),
           {"unit_of_measurement": "V", "device_class": "voltage", "state_class": "measurement"}),
    Entity("binary_sensor", "high_voltage", "High-voltage mode", lambda s, tz: "ON" if s.high_voltage else "OFF",
           {"icon": "mdi:flash-alert", "payload_on": "ON", "payload_off": "OFF"}),
    Entity("sensor", "controller", "Controller", lambda s, tz: s.controller,
           {"entity_category": "diagnostic", "icon": "mdi:brain"}),
    Entity("sensor", "last_decision", "Last decision", lambda s, tz: _stamp(s.time),
           {"device_class": "timestamp", "entity_category": "diagnostic"}),
)


def _number(object_id: str, name: str, section: str, key: str, unit: str | None, icon: str) -> Control:
    lo, hi = key_range(section, key)  # from the validator itself: no slider offers a value the file refuses
    extra: dict[str, Any] = {"min": lo, "max": hi, "step": 1, "mode": "box", "icon": icon}
    if unit:
        extra["unit_of_measurement"] = unit
    return Control(Entity("number", object_id, name, extra=extra), section, key)


CONTROLS: tuple[Control, ...] = (
    Control(Entity("select", "profile", "Profile", extra={"options": list(PROFILES), "icon": "mdi:tune"}),
            "strategy", "profile"),
    _number("reserve", "Reserve", "battery", "reserve_pct", "%", "mdi:battery-lock"),
    _number("endpoint_soc", "Endpoint target", "goals", "endpoint_soc_pct", "%", "mdi:battery-clock"),
    _number("endpoint_hour", "Endpoint hour (local)", "goals", "endpoint_hour", None, "mdi:clock-end"),
)


def control_value(inst: Installation, control: Control) -> Any:
    """The current value of a control's key in an installation."""
    return getattr(getattr(inst, control.section), control.key)


def _control_payload(value: Any) -> str:
    if value is None:
        return NONE_PAYLOAD
    return value if isinstance(value, str) else _num(value, 6)


# --------------------------------------------------------------------------------------------------
# Safe edits of the config file.
# --------------------------------------------------------------------------------------------------


def _toml_value(payload: str, numeric: bool) -> Any:
    """The TOML value of a command payload: a number when it reads as one, else the text (which the validator
    then refuses for a numeric key, in its own words)."""
    text = payload.strip()
    if not numeric:
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return int(number) if number.is_integer() else number


def _set_key(doc: tomlkit.TOMLDocument, section: str, key: str, value: Any) -> None:
    """Set ``section.key`` in a parsed document, keeping the line's comment in its column."""
    if section not in doc:
        doc.add(section, tomlkit.table())
    table = doc[section]
    old = table.get(key)
    table[key] = value
    new = table[key]
    if old is not None and hasattr(old, "trivia") and old.trivia.comment and hasattr(new, "trivia"):
        shift = len(old.as_string()) - len(new.as_string())
        new.trivia.comment_ws = " " * max(1, len(old.trivia.comment_ws) + shift)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be synced
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_config_value(path: str | Path, section: str, key: str, value: Any) -> Installation:
    """Change one key of an installation TOML file, safely, and return the new installation.

    Only ``section.key`` is edited; comments, order and layout of everything else stay as the owner wrote them.
    The edited text must pass the config validator as a whole (ranges and the rules between keys, e.g. the
    reserve may not lie above the endpoint target); then it is written to a temporary file in the same directory,
    synced, checked once more with :func:`~dwars.config.load_config`, the current file is copied to
    ``<name>.bak``, and the temporary file replaces it with ``os.replace`` (atomic on POSIX).

    Raises
    ------
    ConfigError
        the new value (or the file as it is now) does not pass; nothing is written.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([f"cannot be read: {err.strerror}"], str(path)) from None
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as err:
        raise ConfigError([f"not valid TOML: {err}"], str(path)) from None
    _set_key(doc, section, key, value)
    new_text = tomlkit.dumps(doc)
    # The validator first, in memory: a refused value never touches the disk.
    installation_from_dict(tomllib.loads(new_text), source=str(path))

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(new_text)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(path, tmp)
        try:
            load_config(tmp)
        except ConfigError as err:  # the same file under its real name, for the message
            raise ConfigError(err.problems, str(path)) from None
        backup = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup)
        with open(backup, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return load_config(path)


# --------------------------------------------------------------------------------------------------
# The bridge.
# --------------------------------------------------------------------------------------------------


class HomeAssistantBridge:
    """dwars as one Home Assistant device over MQTT discovery (see the module text).

    Parameters
    ----------
    host, port : the MQTT broker (Home Assistant's Mosquitto add-on listens on 1883).
    config_path : the installation TOML file the controls read and change.
    node_id : the device's id: topics, ``unique_id`` prefix; letters, digits, ``_`` and ``-``.
    username, password : broker login, when it needs one.
    discovery_prefix : Home Assistant's discovery prefix (its default: ``homeassistant``).
    on_config_change : called with the new :class:`~dwars.config.Installation` after a change from Home
        Assistant was saved. It runs on the MQTT network thread: hand the work to the control loop (e.g. with
        ``loop.call_soon_threadsafe``) rather than doing it there.
    keepalive_s : MQTT keep-alive; the broker declares dwars offline after 1.5 times this without a word.

    Examples
    --------
    >>> bridge = HomeAssistantBridge("127.0.0.1", 1883, "home.toml").start()  # doctest: +SKIP
    >>> bridge.publish(status)                                                   # doctest: +SKIP
    >>> bridge.close()                                                           # doctest: +SKIP
    """

    def __init__(self, host: str, port: int, config_path: str | Path, node_id: str = "dwars",
                 username: str | None = None, password: str | None = None, discovery_prefix: str = "homeassistant",
                 on_config_change: Callable[[Installation], None] | None = None, keepalive_s: int = 30) -> None:
        if not _NODE_ID.match(node_id):
            raise ValueError(f"node_id = {node_id!r}: use only letters, digits, _ and - (it becomes an MQTT topic)")
        self.host, self.port = host, int(port)
        self.where = f"MQTT broker {host}:{self.port}"
        self.config_path = Path(config_path)
        self.node_id = node_id
        self.discovery_prefix = discovery_prefix.rstrip("/")
        self.on_config_change = on_config_change
        self.keepalive_s = int(keepalive_s)
        self.installation = load_config(self.config_path)
        self.availability_topic = f"{node_id}/availability"
        self.last_status: RuntimeStatus | None = None
        self.connects = 0  # successful (re)connections, for the log and the tests
        self._edit_lock = threading.Lock()  # one config edit at a time
        self._connected = threading.Event()
        self._controls = {self.command_topic(c.entity): c for c in CONTROLS}

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{node_id}-bridge")
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- topics -----------------------------------------------------------------------------------

    def discovery_topic(self, entity: Entity) -> str:
        return f"{self.discovery_prefix}/{entity.component}/{self.node_id}/{entity.object_id}/config"

    def state_topic(self, entity: Entity) -> str:
        return f"{self.node_id}/{entity.object_id}/state"

    def command_topic(self, entity: Entity) -> str:
        return f"{self.node_id}/{entity.object_id}/set"

    def discovery_payload(self, entity: Entity) -> dict[str, Any]:
        """The discovery config of one entity (Home Assistant's full key names)."""
        payload: dict[str, Any] = {
            "name": entity.name,
            "unique_id": f"{self.node_id}_{entity.object_id}",
            "state_topic": self.state_topic(entity),
            "availability_topic": self.availability_topic,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": {
                "identifiers": [self.node_id],
                "name": "dwars" if self.node_id == "dwars" else f"dwars {self.node_id}",
                "manufacturer": "dwars",
                "model": "home battery energy manager",
                "sw_version": __version__,
            },
            "origin": {"name": "dwars", "sw_version": __version__},
            **entity.extra,
        }
        if entity.component in ("select", "number"):
            payload["command_topic"] = self.command_topic(entity)
        return payload

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> HomeAssistantBridge:
        """Connect in the background (paho's network thread retries until the broker answers) and return self."""
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self.client.loop_start()
        return self

    def wait_connected(self, timeout_s: float = 5.0) -> bool:
        """True once connected (and announced), False when ``timeout_s`` passed first."""
        return self._connected.wait(timeout_s)

    def close(self) -> None:
        """Say ``offline`` (retained) and disconnect."""
        if self.client.is_connected():
            info = self.client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()

    def __enter__(self) -> HomeAssistantBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, status: RuntimeStatus) -> None:
        """Publish the sensor states of one status (retained). While disconnected only the last status is kept;
        it goes out on the reconnect."""
        self.last_status = status
        if self.client.is_connected():
            self._publish_status(status)

    def _send(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1, retain=True)

    def _publish_status(self, status: RuntimeStatus) -> None:
        tz = self.installation.site.timezone
        for entity in SENSORS:
            assert entity.value is not None  # every sensor has one
            self._send(self.state_topic(entity), entity.value(status, tz))

    def _publish_control(self, control: Control, inst: Installation) -> None:
        self._send(self.state_topic(control.entity), _control_payload(control_value(inst, control)))

    def _announce(self) -> None:
        """Discovery, availability and every known state: after each (re)connect and Home Assistant restart."""
        for entity in (*SENSORS, *(c.entity for c in CONTROLS)):
            self._send(self.discovery_topic(entity), json.dumps(self.discovery_payload(entity)))
        self._send(self.availability_topic, ONLINE)
        for control in CONTROLS:
            self._publish_control(control, self.installation)
        if self.last_status is not None:
            self._publish_status(self.last_status)

    # -- paho callbacks (network thread) ----------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            log.error("%s refused the connection: %s (check the user name and password)", self.where, reason_code)
            return
        self.connects += 1
        topics = [(topic, 1) for topic in self._controls] + [(f"{self.discovery_prefix}/status", 1)]
        client.subscribe(topics)
        self._announce()
        log.info("%s: connected (%s), %d entities announced to Home Assistant", self.where,
                 "first time" if self.connects == 1 else f"reconnect {self.connects - 1}",
                 len(SENSORS) + len(CONTROLS))
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._connected.clear()
        if reason_code.is_failure:
            log.warning("%s: connection lost (%s); retrying in the background", self.where, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = message.payload.decode("utf-8", errors="replace")
        if message.topic == f"{self.discovery_prefix}/status":
            if payload == ONLINE:  # Home Assistant (re)started: it may have lost the entities
                self._announce()
            return
        control = self._controls.get(message.topic)
        if control is not None:
            self.handle_command(control, payload)

    # -- commands ---------------------------------------------------------------------------------

    def handle_command(self, control: Control, payload: str) -> bool:
        """Apply one command from Home Assistant; True when the config file was changed.

        A refused value leaves the file alone, publishes the value in force again (Home Assistant shows the
        entity back at it) and logs why.
        """
        numeric = control.entity.component == "number"
        value = _toml_value(payload, numeric)
        with self._edit_lock:
            try:
                current = load_config(self.config_path)
            except ConfigError as err:
                log.warning("Home Assistant asked to set %s = %s: refused, the config file has problems of its "
                            "own; fix them first:\n%s", control.where, payload.strip(), err)
                self._publish_control(control, self.installation)
                return False
            old = control_value(current, control)
            if old == value:
                self.installation = current
                self._publish_control(control, current)
                return False
            try:
                new = write_config_value(self.config_path, control.section, control.key, value)
            except ConfigError as err:
                log.warning("Home Assistant asked to set %s = %s: refused, %s stays %s. %s", control.where,
                            payload.strip(), control.where, _control_payload(old), "; ".join(err.problems))
                self.installation = current
                self._publish_control(control, current)
                return False
            except OSError as err:
                log.error("Home Assistant asked to set %s = %s: %s could not be written (%s); it is unchanged",
                          control.where, payload.strip(), self.config_path, err)
                self._publish_control(control, current)
                return False
            self.installation = new
            self._publish_control(control, new)
            log.info("%s changed from %s to %s by Home Assistant; %s saved (previous version in %s.bak)",
                     control.where, _control_payload(old), _control_payload(control_value(new, control)),
                     self.config_path, self.config_path.name)
        if self.on_config_change is not None:
            try:
                self.on_config_change(new)
            except Exception:  # the network thread must live on; the file is saved either way
                log.exception("on_config_change failed after %s was changed", control.where)
        return True
