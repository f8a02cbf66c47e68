"""The HomeWizard Wi-Fi P1 meter (HWE-P1) through its local API v1: ``GET http://<host>/api/v1/data``.

The answer is one JSON object (https://api-documentation.homewizard.com/docs/v1/measurement); the fields dwars
uses, all optional in the API ("it does not send data points that are null or not available", older firmware
sends them as ``null``):

===============================================  ========================================================
``active_power_w``                               net power, W (negative: feeding in)
``active_power_l1_w`` .. ``_l3_w``               net power per phase, W
``active_current_l1_a`` .. ``_l3_a``             current per phase, A (some firmware signs it; dwars
                                                 keeps the magnitude)
``active_voltage_l1_v`` .. ``_l3_v``             voltage per phase, V
``total_power_import_kwh`` (or ``_t1_kwh`` + ``_t2_kwh`` ..)   import counter, kWh
``total_power_export_kwh`` (or ``_t1_kwh`` + ``_t2_kwh`` ..)   export counter, kWh
``total_gas_m3``                                 gas meter, m3
===============================================  ========================================================

``active_power_w`` and the two counters are required. The API must be switched on in the HomeWizard Energy app
(Settings > Meters > your meter > Local API); otherwise the meter answers 403. Only the standard library is used
(urllib in a worker thread), to keep the Pi's install small.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from dwars.runtime.meter.reading import MeterError, MeterReading


def _field(data: Mapping[str, Any], key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MeterError(f"{where}: {key} = {value!r} is not a number")
    return float(value)


def _counter(data: Mapping[str, Any], direction: str, where: str) -> float:
    total = _field(data, f"total_power_{direction}_kwh", where)
    if total is not None:
        return total
    tariffs = [_field(data, f"total_power_{direction}_t{n}_kwh", where) for n in (1, 2, 3, 4)]
    if tariffs[0] is None:
        raise MeterError(f"{where}: the answer lacks total_power_{direction}_kwh (and total_power_{direction}_t1_kwh)")
    return sum(t for t in tariffs if t is not None)


def _phases(data: Mapping[str, Any], pattern: str, where: str) -> tuple[float, ...] | None:
    values = [_field(data, pattern.format(n), where) for n in (1, 2, 3)]
    if values[0] is not None and values[1] is None and values[2] is None:
        return (values[0],)
    if all(v is not None for v in values):
        return tuple(v for v in values if v is not None)
    return None


def parse_homewizard(payload: bytes | str | Mapping[str, Any], time: datetime, source: str = "homewizard") \
        -> MeterReading:
    """A :class:`MeterReading` from an ``/api/v1/data`` answer, measured at ``time`` (tz-aware).

    Raises
    ------
    MeterError
        for an answer that is not a JSON object, a non-numeric value, or one without ``active_power_w`` or the
        import/export counters (the message names the field).
    """
    where = source
    if isinstance(payload, Mapping):
        data = payload
    else:
        try:
            data = json.loads(payload)
        except ValueError as err:
            raise MeterError(f"{where}: the answer is not JSON ({err})") from None
        if not isinstance(data, dict):
            raise MeterError(f"{where}: the answer is not a JSON object but {type(data).__name__}")
    power_w = _field(data, "active_power_w", where)
    if power_w is None:
        raise MeterError(f"{where}: the answer lacks active_power_w (is this a P1 meter? product "
                         f"{data.get('meter_model', 'unknown')!r})")
    phase_w = _phases(data, "active_power_l{}_w", where)
    currents = _phases(data, "active_current_l{}_a", where)
    return MeterReading(
        time=time.astimezone(UTC),
        import_kw=max(power_w, 0.0) / 1000.0,
        export_kw=max(-power_w, 0.0) / 1000.0,
        import_kwh_total=_counter(data, "import", where),
        export_kwh_total=_counter(data, "export", where),
        phase_power_kw=None if phase_w is None else tuple(w / 1000.0 for w in phase_w),
        phase_current_a=None if currents is None else tuple(abs(a) for a in currents),
        phase_voltage_v=_phases(data, "active_voltage_l{}_v", where),
        gas_m3_total=_field(data, "total_gas_m3", where),
        source=source,
    )


class HomeWizardMeter:
    """The HomeWizard Wi-Fi P1 meter's local API v1.

    Parameters
    ----------
    host : its IP address or host name (``host:port`` also works); give it a fixed address in the router.
    timeout_s : seconds for connecting and for the answer (default 5).
    clock : the time of a reading (default: the system clock; API v1 does not pass the meter's time on).
    """

    def __init__(self, host: str, timeout_s: float = 5.0, clock: Callable[[], datetime] | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s = {timeout_s}: must be > 0")
        self.host = host
        self.timeout_s = float(timeout_s)
        self.url = f"http://{host}/api/v1/data"
        self.source = f"homewizard {host}"
        self.clock = clock or (lambda: datetime.now(UTC))

    def _fetch(self) -> bytes:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            hint = " (the local API is off: switch it on in the HomeWizard Energy app)" if err.code == 403 else ""
            raise MeterError(f"{self.url}: HTTP {err.code} {err.reason}{hint}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise MeterError(f"{self.url}: unreachable ({reason}); is the meter on this network, at this address?") \
                from None

    async def read(self) -> MeterReading:
        """The meter's latest reading (:class:`MeterError` when it cannot be read within about ``timeout_s``)."""
        try:
            # urlopen's timeout applies per socket operation; the outer limit bounds the whole request.
            payload = await asyncio.wait_for(asyncio.to_thread(self._fetch), timeout=2 * self.timeout_s + 1.0)
        except TimeoutError:
            raise MeterError(f"{self.url}: no answer within {2 * self.timeout_s + 1.0:g} s") from None
        return parse_homewizard(payload, self.clock(), self.source)
