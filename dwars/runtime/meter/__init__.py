"""The P1 smart meter: what the grid connection does now, per phase, for the runtime's loop and load balancing.

=========================================  ===============================================================
:mod:`~dwars.runtime.meter.reading`        :class:`MeterReading`, :func:`parse_telegram` (DSMR 4/5, e-MUCS)
:mod:`~dwars.runtime.meter.dsmr`           :class:`DsmrTcpMeter` (ser2net), :class:`DsmrSerialMeter` (USB cable),
                                           :class:`LatestReading` (one streaming connection for all readers)
:mod:`~dwars.runtime.meter.homewizard`     :class:`HomeWizardMeter` (the HomeWizard P1 meter's local API v1)
:mod:`~dwars.runtime.meter.peak`           :func:`unexpected_peak`, :class:`PeakWatch` (decide again early)
:mod:`~dwars.runtime.meter.simulated`      :func:`build_telegram`, :func:`simulated_p1_server` (tests, dry runs)
=========================================  ===============================================================

Every meter has ``async read() -> MeterReading`` and raises :class:`MeterError` with a plain-words reason.
"""

from __future__ import annotations

from dwars.config import METERS
from dwars.runtime.meter.dsmr import DsmrSerialMeter, DsmrTcpMeter, LatestReading, TelegramBuffer
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
    raise MeterError(f"meter = {kind!r}: must be one of {', '.join(METER_KINDS)}")


__all__ = [
    "METER_KINDS",
    "DsmrSerialMeter",
    "DsmrTcpMeter",
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
    "open_meter",
    "parse_homewizard",
    "parse_telegram",
    "simulated_p1_server",
    "unexpected_peak",
]
