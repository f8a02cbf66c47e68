"""The P1 smart meter: what the grid connection does now, per phase, for the runtime's loop and load balancing.

=========================================  ===============================================================
:mod:`~dwars.runtime.meter.reading`        :class:`MeterReading`, :func:`parse_telegram` (DSMR 4/5, e-MUCS)
:mod:`~dwars.runtime.meter.dsmr`           :class:`DsmrTcpMeter` (ser2net), :class:`DsmrSerialMeter` (USB cable),
                                           :class:`LatestReading` (one streaming connection for all readers)
:mod:`~dwars.runtime.meter.homewizard`     :class:`HomeWizardMeter` (the HomeWizard P1 meter's local API v1)
:mod:`~dwars.runtime.meter.hass`           :class:`HomeAssistantWebSocketMeter`, :class:`HomeAssistantRestMeter`,
                                           :class:`HomeAssistantMqttMeter` (the entities of Home Assistant's DSMR
                                           integration: no splitter on the P1 port)
:mod:`~dwars.runtime.meter.peak`           :func:`unexpected_peak`, :class:`PeakWatch` (decide again early)
:mod:`~dwars.runtime.meter.simulated`      :func:`build_telegram`, :func:`simulated_p1_server` (tests, dry runs)
=========================================  ===============================================================

Every meter has ``async read() -> MeterReading`` and raises :class:`MeterError` with a plain-words reason.
:func:`open_configured_meter` makes the meter of a config's ``[runtime]`` section.
"""

from __future__ import annotations

import os

from dwars.config import HA_APIS, METERS, RuntimeConfig
from dwars.runtime.meter.dsmr import DsmrSerialMeter, DsmrTcpMeter, LatestReading, TelegramBuffer
from dwars.runtime.meter.hass import (
    HomeAssistantMqttMeter,
    HomeAssistantRestMeter,
    HomeAssistantWebSocketMeter,
    reading_from_states,
)
from dwars.runtime.meter.homewizard import HomeWizardMeter, parse_homewizard
from dwars.runtime.meter.peak import PeakWatch, unexpected_peak
from dwars.runtime.meter.reading import Meter, MeterError, MeterReading, dsmr_time_to_utc, parse_telegram
from dwars.runtime.meter.simulated import SimulatedP1Server, Totals, build_telegram, simulated_p1_server

METER_KINDS = tuple(kind for kind in METERS if kind != "none")  # the config's kinds that are a meter


def open_meter(kind: str, host: str = "", port: int = 2001, device: str = "/dev/ttyUSB0",
               timeout_s: float | None = None) -> Meter:
    """The meter of a kind named as in the config's ``[runtime] meter`` key.

    ``dsmr_tcp`` needs ``host`` and ``port`` (ser2net), ``dsmr_serial`` the ``device``, ``homewizard`` the
    ``host``. ``timeout_s`` None takes each meter's default.
    """
    extra = {} if timeout_s is None else {"timeout_s": timeout_s}
    if kind in ("dsmr_tcp", "homewizard") and not host:
        raise MeterError(f"meter = {kind}: needs the meter's host (meter_host)")
    if kind == "dsmr_tcp":
        return DsmrTcpMeter(host, port, **extra)
    if kind == "dsmr_serial":
        return DsmrSerialMeter(device, **extra)
    if kind == "homewizard":
        return HomeWizardMeter(host, **extra)
    if kind == "homeassistant":  # it needs Home Assistant's address, token and API: the [runtime] section has them
        raise MeterError("meter = homeassistant: open it with open_configured_meter (it needs ha_url and the token)")
    raise MeterError(f"meter = {kind!r}: must be one of {', '.join(METER_KINDS)}")


def open_configured_meter(r: RuntimeConfig, timeout_s: float | None = None) -> Meter:
    """The meter of ``[runtime] meter``, every kind (``meter = "none"`` is refused: there is no meter to read).

    ``homeassistant`` reads Home Assistant's DSMR entities through ``ha_api``: ``websocket`` and ``rest`` with the
    access token in the environment variable named by ``ha_token_env``, ``mqtt`` (``mqtt_statestream``) from the
    ``mqtt_host`` broker with the password in ``mqtt_password_env``. The others go to :func:`open_meter`.
    ``timeout_s`` None takes each meter's default. Nothing connects here: a meter connects on its first read (or
    its ``start()``).
    """
    if r.meter != "homeassistant":
        return open_meter(r.meter, r.meter_host, r.meter_port, r.meter_device, timeout_s)
    extra = {} if timeout_s is None else {"timeout_s": timeout_s}
    if r.ha_api == "mqtt":
        if not r.mqtt_host:
            raise MeterError("meter = homeassistant with ha_api = mqtt: needs mqtt_host (the broker Home Assistant's "
                             "mqtt_statestream publishes to)")
        return HomeAssistantMqttMeter(r.mqtt_host, r.mqtt_port, username=r.mqtt_username or None,
                                      password=os.environ.get(r.mqtt_password_env) or None,
                                      base_topic=r.ha_statestream_topic, entity_prefix=r.ha_entity_prefix,
                                      password_env=r.mqtt_password_env, **extra)
    token = os.environ.get(r.ha_token_env, "").strip()
    if not token:
        raise MeterError(f"meter = homeassistant: the environment variable {r.ha_token_env} holds no access token; "
                         "make a long-lived access token in Home Assistant (your profile > Security) and put it in "
                         f"{r.ha_token_env}")
    if r.ha_api == "rest":
        return HomeAssistantRestMeter(r.ha_url, token, r.ha_entity_prefix, token_env=r.ha_token_env, **extra)
    if r.ha_api == "websocket":
        return HomeAssistantWebSocketMeter(r.ha_url, token, r.ha_entity_prefix, token_env=r.ha_token_env, **extra)
    raise MeterError(f"ha_api = {r.ha_api!r}: must be one of {', '.join(HA_APIS)}")


__all__ = [
    "METER_KINDS",
    "DsmrSerialMeter",
    "DsmrTcpMeter",
    "HomeAssistantMqttMeter",
    "HomeAssistantRestMeter",
    "HomeAssistantWebSocketMeter",
    "HomeWizardMeter",
    "LatestReading",
    "Meter",
    "MeterError",
    "MeterReading",
    "PeakWatch",
    "SimulatedP1Server",
    "TelegramBuffer",
    "Totals",
    "build_telegram",
    "dsmr_time_to_utc",
    "open_configured_meter",
    "open_meter",
    "parse_homewizard",
    "parse_telegram",
    "reading_from_states",
    "simulated_p1_server",
    "unexpected_peak",
]
