"""The P1 meter read through Home Assistant's DSMR integration: no splitter, the P1 port keeps serving Home Assistant.

A P1 port has one reader. When Home Assistant reads it (its core ``dsmr`` integration, with a P1 cable or a P1
Wi-Fi dongle), dwars reads the integration's entities instead of the port: over Home Assistant's WebSocket API
(:class:`HomeAssistantWebSocketMeter`, pushed as they change: the default), its REST API
(:class:`HomeAssistantRestMeter`, polled) or the MQTT broker that its ``mqtt_statestream`` integration publishes
to (:class:`HomeAssistantMqttMeter`).

The entities, and what dwars makes of them (entity id = ``ha_entity_prefix`` + suffix; the prefix is
``sensor.electricity_meter_``: the integration's device "Electricity Meter"):

==========================================  ============================================  ======================
entity id suffix                            integration key                               dwars
==========================================  ============================================  ======================
``power_consumption``                       ``current_electricity_usage``                 ``import_kw``
``power_production``                        ``current_electricity_delivery``              ``export_kw``
``energy_consumption_tarif_1``, ``_2``      ``electricity_used_tariff_1``, ``_2``         ``import_kwh_total``
``energy_consumption_total``                ``electricity_imported_total`` (5L, 5S, Q3D)  ``import_kwh_total``
``energy_production_tarif_1``, ``_2``       ``electricity_delivered_tariff_1``, ``_2``    ``export_kwh_total``
``energy_production_total``                 ``electricity_exported_total`` (5L, 5S, Q3D)  ``export_kwh_total``
``power_consumption_phase_l1`` .. ``l3``    ``instantaneous_active_power_l1_positive`` ..  ``phase_power_kw``
``power_production_phase_l1`` .. ``l3``     ``instantaneous_active_power_l1_negative`` ..  (consumption - prod.)
``voltage_phase_l1`` .. ``l3``              ``instantaneous_voltage_l1`` ..               ``phase_voltage_v``
``current_phase_l1`` .. ``l3``              ``instantaneous_current_l1`` ..               ``phase_current_a``
==========================================  ============================================  ======================

The gas meter is a device of its own: ``sensor.gas_meter_gas_consumption`` (``gas_entity``; keys
``hourly_gas_meter_reading``, ``gas_reading``), m³, for ``gas_m3_total``. A counter's total register is used when
the meter has one (the 5EONHU meters have both), else tariff 1 + 2 (+ 3 + 4).

Sources: the ``SENSORS`` table of ``homeassistant/components/dsmr/sensor.py`` in home-assistant/core (keys,
translation keys, the DSMR versions each one exists for) and the entity ids its tests read
(``tests/components/dsmr/test_sensor.py``: ``sensor.electricity_meter_power_consumption``,
``..._energy_consumption_tarif_1``, ``..._energy_consumption_total``, ``..._voltage_phase_l1``,
``..._current_phase_l1``, ``sensor.gas_meter_gas_consumption``). The Belgian 5B meters have tariff registers
too. The entity ids come from the names the entities had when Home Assistant created them (English in most
installations); where they start differently (another language, a renamed device), set ``ha_entity_prefix``.

The two powers and the two counters are required (:class:`MeterError` naming the entity when one is missing or
``unavailable``/``unknown``: the integration gets no telegrams); the rest is optional (None). Home Assistant
creates the per-phase entities *disabled*: switch them on (Settings > Devices & services > DSMR Smart Meter >
entities) for the per-phase powers that load balancing uses. A per-phase power needs both the consumption and
the production entity of the phase (with only one, an export would read as zero).

Units come from each entity's ``unit_of_measurement`` (the integration passes the meter's kW, kWh, V, A on; a
home owner may switch an entity to W or Wh in Home Assistant); an entity without one is taken in the
integration's unit. The reading's time is the newest of the two power entities' ``last_reported`` (recent
Home Assistant versions, REST only) or ``last_updated``: when Home Assistant last wrote the value; a value that
did not change keeps its old ``last_updated``. The integration writes every 30 s by default (its "Minimum time
between entity updates" option; set it lower for load balancing), and its recent versions write the mean of
the telegrams of that window for the powers, voltages and currents.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dwars.runtime.meter.reading import MeterError, MeterReading

log = logging.getLogger(__name__)

DEFAULT_ENTITY_PREFIX = "sensor.electricity_meter_"
DEFAULT_GAS_ENTITY = "sensor.gas_meter_gas_consumption"
DEFAULT_TOKEN_ENV = "DWARS_HA_TOKEN"
DEFAULT_STATESTREAM_TOPIC = "homeassistant"
#: Home Assistant's states for "no value now" (STATE_UNAVAILABLE, STATE_UNKNOWN; "" from a cleared MQTT state).
NO_VALUE = frozenset({"unavailable", "unknown", ""})

# Each quantity: the units Home Assistant may report it in, as factors into dwars' unit; None: no unit given.
_POWER = {"kW": 1.0, "W": 0.001, "MW": 1000.0, None: 1.0}
_ENERGY = {"kWh": 1.0, "Wh": 0.001, "MWh": 1000.0, "GWh": 1e6, None: 1.0}
_VOLTAGE = {"V": 1.0, "mV": 0.001, "kV": 1000.0, None: 1.0}
_CURRENT = {"A": 1.0, "mA": 0.001, None: 1.0}
_GAS = {"m³": 1.0, "m3": 1.0, "L": 0.001, None: 1.0}

POWER_KEYS = ("power_consumption", "power_production")
_COUNTER_KEYS = {direction: (f"energy_{direction}_total", f"energy_{direction}_tarif_1",
                             f"energy_{direction}_tarif_2", f"energy_{direction}_tarif_3",
                             f"energy_{direction}_tarif_4")
                 for direction in ("consumption", "production")}
_PHASE_KEYS = tuple(f"{kind}_phase_l{n}" for kind in ("power_consumption", "power_production", "voltage", "current")
                    for n in (1, 2, 3))


def entity_ids(prefix: str = DEFAULT_ENTITY_PREFIX, gas_entity: str | None = DEFAULT_GAS_ENTITY) -> tuple[str, ...]:
    """Every entity id dwars may read: the powers, the counters, the phases, the gas meter (when given)."""
    keys = (*POWER_KEYS, *_COUNTER_KEYS["consumption"], *_COUNTER_KEYS["production"], *_PHASE_KEYS)
    return tuple(prefix + key for key in keys) + ((gas_entity,) if gas_entity else ())


@dataclass(frozen=True)
class EntityState:
    """What dwars keeps of one Home Assistant entity.

    Attributes
    ----------
    entity_id : e.g. ``sensor.electricity_meter_power_consumption``.
    state : as Home Assistant gives it: a number as text, ``unavailable`` or ``unknown``.
    unit : its ``unit_of_measurement`` attribute; None when not known.
    updated : when Home Assistant last wrote it (tz-aware UTC); None when not known.
    """

    entity_id: str
    state: str
    unit: str | None = None
    updated: datetime | None = None


def _utc(value: Any, entity_id: str, field: str) -> datetime | None:
    """A timestamp of Home Assistant (ISO 8601 text, or Unix seconds in the WebSocket's compressed states)."""
    if value is None:
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        stamp = datetime.fromisoformat(str(value).strip().strip('"'))
    except (ValueError, OverflowError, OSError):
        raise MeterError(f"{entity_id}: {field} = {value!r} is not a time") from None
    # Home Assistant always writes the offset; a time without one is taken as UTC, as Home Assistant keeps it.
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def state_from_ha(obj: Mapping[str, Any]) -> EntityState:
    """An :class:`EntityState` from one state object of the REST API or of the WebSocket's ``get_states``."""
    entity_id = obj.get("entity_id")
    if not isinstance(entity_id, str) or "state" not in obj:
        raise MeterError(f"not a Home Assistant state object (no entity_id and state): {str(obj)[:80]}")
    attributes = obj.get("attributes")
    unit = attributes.get("unit_of_measurement") if isinstance(attributes, Mapping) else None
    # last_reported moves on whenever the integration writes, also an unchanged value; last_updated only on change.
    times = [_utc(obj.get(field), entity_id, field) for field in ("last_reported", "last_updated", "last_changed")]
    known = [t for t in times if t is not None]
    return EntityState(entity_id, str(obj["state"]), None if unit is None else str(unit), max(known, default=None))


def _from_compressed(entity_id: str, compressed: Mapping[str, Any]) -> EntityState:
    attributes = compressed.get("a")
    unit = attributes.get("unit_of_measurement") if isinstance(attributes, Mapping) else None
    # The compressed form leaves lu out when it equals lc (homeassistant.core.State.as_compressed_state).
    stamp = compressed.get("lu", compressed.get("lc"))
    return EntityState(entity_id, str(compressed.get("s", "")), None if unit is None else str(unit),
                       _utc(stamp, entity_id, "lu/lc"))


def apply_entities_event(states: dict[str, EntityState], event: Mapping[str, Any]) -> None:
    """Bring ``states`` up to date with one event of the WebSocket's ``subscribe_entities``.

    The event holds ``a`` (entities added, compressed: ``s`` state, ``a`` attributes, ``lc``/``lu`` Unix times),
    ``c`` (changes: ``+`` the new state, times and attributes, ``-`` the attributes removed) and ``r`` (entity ids
    removed); see ``homeassistant/components/websocket_api/messages.py`` (``_state_diff_event``).
    """
    for entity_id, compressed in (event.get("a") or {}).items():
        states[entity_id] = _from_compressed(entity_id, compressed)
    for entity_id, diff in (event.get("c") or {}).items():
        old = states.get(entity_id)
        if old is None:
            continue  # a change of an entity never added: cannot happen within one subscription
        plus = diff.get("+") or {}
        unit = old.unit
        attributes = plus.get("a")
        if isinstance(attributes, Mapping) and "unit_of_measurement" in attributes:
            unit = str(attributes["unit_of_measurement"])
        if "unit_of_measurement" in ((diff.get("-") or {}).get("a") or []):
            unit = None
        updated = old.updated
        if "lc" in plus:  # the state changed: last_updated moved with last_changed
            updated = _utc(plus["lc"], entity_id, "lc")
        elif "lu" in plus:
            updated = _utc(plus["lu"], entity_id, "lu")
        states[entity_id] = EntityState(entity_id, str(plus.get("s", old.state)), unit, updated)
    for entity_id in event.get("r") or []:
        states.pop(entity_id, None)


def _missing_hint(entity_id: str) -> str:
    return ("is the DSMR integration set up, and do its entities start with ha_entity_prefix (Settings > "
            "Devices & services > Entities lists them)?")


class _Assembler:
    """Turns the entities' states into a :class:`MeterReading`, with the reasons for what it cannot use."""

    def __init__(self, states: Mapping[str, EntityState], prefix: str, source: str,
                 missing_hint: Callable[[str], str]) -> None:
        self.states = states
        self.prefix = prefix
        self.source = source
        self.missing_hint = missing_hint

    def value(self, entity_id: str, what: str, units: Mapping[str | None, float], required: bool) -> float | None:
        """The entity's value in dwars' unit; None for an optional one that is absent, unavailable or odd."""
        st = self.states.get(entity_id)
        if st is None:
            if required:
                raise MeterError(f"{self.source}: Home Assistant has no entity {entity_id} ({what}); "
                                 f"{self.missing_hint(entity_id)}")
            return None
        if st.state.strip().lower() in NO_VALUE:
            if required:
                raise MeterError(f"{self.source}: {entity_id} ({what}) is {st.state!r} in Home Assistant: its DSMR "
                                 "integration gets no telegrams from the meter now")
            return None
        try:
            number = float(st.state)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            if required:
                raise MeterError(f"{self.source}: {entity_id} ({what}) = {st.state!r} is not a number")
            return None
        if st.unit not in units:
            expected = " or ".join(u for u in units if u is not None)
            if required:
                raise MeterError(f"{self.source}: {entity_id} ({what}) is in {st.unit!r}; dwars reads {expected}")
            log.warning("%s: %s is in %r, not %s: left out", self.source, entity_id, st.unit, expected)
            return None
        return number * units[st.unit]

    def power(self, key: str, what: str) -> float:
        value = self.value(self.prefix + key, what, _POWER, required=True)
        assert value is not None
        if value < 0:  # the meter has one register per direction; a negative value is not what it sent
            raise MeterError(f"{self.source}: {self.prefix + key} ({what}) = {value:g} kW is negative; the DSMR "
                             "integration reports import and export each as a number >= 0")
        return value

    def counter(self, direction: str) -> float:
        """The meter's counter, kWh: the total register when there is one, else tariff 1 + 2 (+ 3 + 4)."""
        total, *tariffs = (self.prefix + key for key in _COUNTER_KEYS[direction])
        what = f"energy {'imported' if direction == 'consumption' else 'exported'}"
        if total in self.states and tariffs[0] not in self.states:
            value = self.value(total, what, _ENERGY, required=True)
            assert value is not None
            return value
        value = self.value(total, what, _ENERGY, required=False)
        if value is not None:
            return value
        if tariffs[0] not in self.states:
            raise MeterError(f"{self.source}: Home Assistant has neither {tariffs[0]} nor {total} ({what}); "
                             f"{self.missing_hint(tariffs[0])}")
        t1 = self.value(tariffs[0], f"{what}, tariff 1", _ENERGY, required=True)
        t2 = self.value(tariffs[1], f"{what}, tariff 2", _ENERGY, required=True)
        more = (self.value(t, what, _ENERGY, required=False) for t in tariffs[2:])
        return sum((v for v in (t1, t2, *more) if v is not None), 0.0)

    def phases(self, key: str, units: Mapping[str | None, float]) -> tuple[float, ...] | None:
        return _phases([self.value(f"{self.prefix}{key}_phase_l{n}", f"phase L{n}", units, required=False)
                        for n in (1, 2, 3)])

    def phase_power(self) -> tuple[float, ...] | None:
        net: list[float | None] = []
        for n in (1, 2, 3):
            plus = self.value(f"{self.prefix}power_consumption_phase_l{n}", f"power on L{n}", _POWER, False)
            minus = self.value(f"{self.prefix}power_production_phase_l{n}", f"power on L{n}", _POWER, False)
            net.append(None if plus is None or minus is None else plus - minus)
        return _phases(net)

    def time(self) -> datetime | None:
        stamps = [st.updated for key in POWER_KEYS
                  if (st := self.states.get(self.prefix + key)) is not None and st.updated is not None]
        return max(stamps, default=None)


def _phases(values: list[float | None]) -> tuple[float, ...] | None:
    """(L1,) for a single-phase meter, (L1, L2, L3) for a three-phase one; None when absent or incomplete."""
    if values[0] is not None and values[1] is None and values[2] is None:
        return (values[0],)
    if all(v is not None for v in values):
        return tuple(v for v in values if v is not None)
    return None


def reading_from_states(states: Mapping[str, EntityState] | Iterable[Mapping[str, Any]],
                        prefix: str = DEFAULT_ENTITY_PREFIX, source: str = "homeassistant",
                        gas_entity: str | None = DEFAULT_GAS_ENTITY,
                        clock: Callable[[], datetime] | None = None,
                        missing_hint: Callable[[str], str] = _missing_hint) -> MeterReading:
    """A :class:`MeterReading` from the DSMR integration's entities.

    Parameters
    ----------
    states : by entity id, or Home Assistant state objects as ``GET /api/states`` answers (entities that are not
        the meter's are ignored).
    prefix : the common start of the DSMR entities' ids (``ha_entity_prefix``).
    source : put into :attr:`MeterReading.source` and into the messages.
    gas_entity : the gas meter's entity (None: no gas).
    clock : the time of the reading when no power entity has one (default: the system clock).
    missing_hint : the advice after "Home Assistant has no entity X", given X.

    Raises
    ------
    MeterError
        naming the entity: a required one (the two powers, the two counters) that is missing, unavailable, not a
        number or in a unit dwars does not know, or a negative power.
    """
    if not isinstance(states, Mapping):
        states = {st.entity_id: st for st in map(state_from_ha, states)}
    a = _Assembler(states, prefix, source, missing_hint)
    import_kw = a.power("power_consumption", "power imported now")
    export_kw = a.power("power_production", "power exported now")
    currents = a.phases("current", _CURRENT)
    gas = a.value(gas_entity, "gas meter", _GAS, required=False) if gas_entity else None
    return MeterReading(
        time=a.time() or (clock or (lambda: datetime.now(UTC)))().astimezone(UTC),
        import_kw=import_kw,
        export_kw=export_kw,
        import_kwh_total=a.counter("consumption"),
        export_kwh_total=a.counter("production"),
        phase_power_kw=a.phase_power(),
        phase_current_a=None if currents is None else tuple(abs(c) for c in currents),
        phase_voltage_v=a.phases("voltage", _VOLTAGE),
        gas_m3_total=gas,
        source=source,
    )


class _TokenRefusedError(MeterError):
    """Home Assistant refused the access token (a reconnect waits longer: each refusal is a failed login)."""


def _token_refused(source: str, token_env: str, detail: str) -> MeterError:
    return _TokenRefusedError(
        f"{source}: Home Assistant refused the access token in {token_env} ({detail}); it is wrong or was deleted: "
        f"make a new long-lived access token (your Home Assistant profile > Security) and put it in {token_env}")


def _check_timeout(timeout_s: float) -> float:
    if not timeout_s > 0:
        raise ValueError(f"timeout_s = {timeout_s}: must be > 0")
    return float(timeout_s)


# ------------------------------------------------------------------------------------------------ REST


class HomeAssistantRestMeter:
    """The DSMR entities polled over Home Assistant's REST API: ``GET /api/states/<entity_id>`` for each.

    Parameters
    ----------
    url : Home Assistant's address (``ha_url``), e.g. ``http://homeassistant.local:8123``.
    token : a long-lived access token (``Authorization: Bearer``).
    entity_prefix : ``ha_entity_prefix``.
    token_env : the environment variable the token came from, for the messages.
    gas_entity : the gas meter's entity (None: no gas).
    timeout_s : seconds for connecting and for each answer (default 5).
    recheck_s : entities that Home Assistant did not have (404) are asked for again after this many seconds (a
        per-phase entity switched on later); in between a read asks only for those it has.
    clock : the time of a reading when Home Assistant gives none (default: the system clock).

    Only the standard library is used (urllib in a worker thread), as for the HomeWizard meter.
    """

    def __init__(self, url: str, token: str, entity_prefix: str = DEFAULT_ENTITY_PREFIX, *,
                 token_env: str = DEFAULT_TOKEN_ENV, gas_entity: str | None = DEFAULT_GAS_ENTITY,
                 timeout_s: float = 5.0, recheck_s: float = 600.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.entity_prefix = entity_prefix
        self.token_env = token_env
        self.gas_entity = gas_entity
        self.timeout_s = _check_timeout(timeout_s)
        self.recheck_s = float(recheck_s)
        self.clock = clock
        self.source = f"homeassistant {self.url}"
        self.entities = entity_ids(entity_prefix, gas_entity)
        self._present: set[str] = set()
        self._checked = -math.inf  # time.monotonic() of the last round that asked for every entity

    def _state_url(self, entity_id: str) -> str:
        return f"{self.url}/api/states/{urllib.parse.quote(entity_id)}"

    def _fetch_one(self, entity_id: str) -> dict[str, Any] | None:
        """The entity's state object; None when Home Assistant has no such entity (404)."""
        url = self._state_url(entity_id)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}",
                                                       "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            if err.code == 401:
                raise _token_refused(self.source, self.token_env, f"HTTP 401 from {url}") from None
            hint = (" (Home Assistant bans an address after too many refused logins: see ip_bans.yaml in its "
                    "config folder)") if err.code == 403 else ""
            raise MeterError(f"{url}: HTTP {err.code} {err.reason}{hint}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise MeterError(f"{self.url}: unreachable ({reason}); is Home Assistant running at this address "
                             "(ha_url)?") from None
        try:
            obj = json.loads(body)
        except ValueError as err:
            raise MeterError(f"{url}: the answer is not JSON ({err}); is this Home Assistant?") from None
        if not isinstance(obj, dict):
            raise MeterError(f"{url}: the answer is not a state object but {type(obj).__name__}")
        return obj

    def _fetch(self, wanted: tuple[str, ...], deadline: float) -> dict[str, EntityState]:
        found: dict[str, EntityState] = {}
        for entity_id in wanted:
            if time.monotonic() > deadline:  # the caller has given up; do not keep Home Assistant busy
                break
            obj = self._fetch_one(entity_id)
            if obj is not None:
                found[entity_id] = state_from_ha(obj)
        return found

    async def read(self) -> MeterReading:
        """The entities' latest values (:class:`MeterError` naming the reason when they cannot be read)."""
        now = time.monotonic()
        full = now - self._checked >= self.recheck_s
        wanted = self.entities if full else tuple(e for e in self.entities if e in self._present)
        limit_s = 2 * self.timeout_s + 1.0 + 0.1 * len(wanted)
        try:
            states = await asyncio.wait_for(asyncio.to_thread(self._fetch, wanted, now + limit_s), timeout=limit_s)
        except TimeoutError:
            raise MeterError(f"{self.url}: no answer within {limit_s:g} s") from None
        if full:
            self._present, self._checked = set(states), now
        elif set(states) != set(wanted):  # an entity went away (renamed?): ask for all of them next time
            self._present &= set(states)
            self._checked = -math.inf
        return reading_from_states(states, self.entity_prefix, self.source, self.gas_entity, self.clock)


# ------------------------------------------------------------------------------------------------ WebSocket


def websocket_url(url: str) -> str:
    """``ws(s)://host:port/api/websocket`` of Home Assistant at ``http(s)://host:port``."""
    parts = urllib.parse.urlsplit(url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise MeterError(f"ha_url = {url!r}: must be http://host:port or https://host:port")
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/api/websocket", "", ""))


_SUBSCRIPTION = 1  # the id of the one command dwars sends


class HomeAssistantWebSocketMeter:
    """The DSMR entities pushed over Home Assistant's WebSocket API (``/api/websocket``), kept up to date.

    The conversation (https://developers.home-assistant.io/docs/api/websocket): Home Assistant says
    ``auth_required``, dwars answers ``{"type": "auth", "access_token": ...}``, Home Assistant says ``auth_ok``
    (or ``auth_invalid`` and closes). Then one ``subscribe_entities`` with the meter's entity ids: Home Assistant
    sends the states of those it has at once, and every change after that, for these entities only (not every
    state change of the house, as ``subscribe_events`` would). A Home Assistant too old for the command answers
    ``unknown_command``: use ``ha_api = "rest"`` there.

    Parameters
    ----------
    url, token, entity_prefix, token_env, gas_entity, clock : as for :class:`HomeAssistantRestMeter`.
    timeout_s : seconds to wait for the connection and the first states (default 10).
    retry_s : after a connection that failed, the next try waits this long (default 5).
    auth_retry_s : after a refused token, the next try waits this long (default 60): Home Assistant counts
        each refusal as a failed login, and may ban the address.

    :meth:`read` connects when there is no connection. A lost connection is reported by the next :meth:`read`
    (:class:`MeterError`); the one after that connects again. Use ``await meter.start()`` to connect ahead of
    the first read, and ``await meter.close()`` at the end.
    """

    def __init__(self, url: str, token: str, entity_prefix: str = DEFAULT_ENTITY_PREFIX, *,
                 token_env: str = DEFAULT_TOKEN_ENV, gas_entity: str | None = DEFAULT_GAS_ENTITY,
                 timeout_s: float = 10.0, retry_s: float = 5.0, auth_retry_s: float = 60.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.url = url.rstrip("/")
        self.ws_url = websocket_url(url)
        self.token = token
        self.entity_prefix = entity_prefix
        self.token_env = token_env
        self.gas_entity = gas_entity
        self.timeout_s = _check_timeout(timeout_s)
        self.retry_s = float(retry_s)
        self.auth_retry_s = float(auth_retry_s)
        self.clock = clock
        self.source = f"homeassistant {self.url}"
        self.entities = entity_ids(entity_prefix, gas_entity)
        self.states: dict[str, EntityState] = {}
        self.problem: MeterError | None = None  # why the last connection ended; None while it runs
        self.connects = 0  # connections that got their first states, for the log and the tests
        self._reported = True  # the problem has been raised by read() once
        self._next_try = -math.inf
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> HomeAssistantWebSocketMeter:
        """Connect in the background (the app calls this before its first read)."""
        if self._task is None or self._task.done():
            self._connect()
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> HomeAssistantWebSocketMeter:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _connect(self) -> None:
        self.states, self.problem = {}, None
        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._ready))

    async def read(self) -> MeterReading:
        """The reading the latest states make (:class:`MeterError` without a connection or states)."""
        task = self._task
        if task is not None and task.done():
            if self.problem is not None and not self._reported:
                self._reported = True
                raise MeterError(str(self.problem))
            wait_s = self._next_try - time.monotonic()
            if wait_s > 0 and self.problem is not None:
                raise MeterError(f"{self.problem}; the next try in {wait_s:.0f} s")
        if self._task is None or self._task.done():
            self._connect()
        assert self._task is not None and self._ready is not None
        if not self._ready.is_set():
            waiter = asyncio.ensure_future(self._ready.wait())
            try:
                await asyncio.wait({waiter, self._task}, timeout=self.timeout_s,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if self._task.done() and self.problem is not None:
                self._reported = True
                raise MeterError(str(self.problem))
            if not self._ready.is_set():
                raise MeterError(f"{self.source}: no states from Home Assistant's WebSocket API ({self.ws_url}) "
                                 f"within {self.timeout_s:g} s")
        return reading_from_states(self.states, self.entity_prefix, self.source, self.gas_entity, self.clock)

    async def _run(self, ready: asyncio.Event) -> None:
        from websockets.exceptions import WebSocketException

        auth = False
        try:
            await self._session(ready)
            raise MeterError(f"{self.source}: Home Assistant closed the WebSocket connection")
        except MeterError as err:
            self.problem = err
            auth = isinstance(err, _TokenRefusedError)
        except (OSError, TimeoutError) as err:
            self.problem = MeterError(f"{self.ws_url}: unreachable ({err}); is Home Assistant running at this "
                                      "address (ha_url)?")
        except WebSocketException as err:  # the handshake failed (no WebSocket there, HTTP 404) or the protocol
            self.problem = MeterError(f"{self.ws_url}: the WebSocket connection failed ({type(err).__name__}: "
                                      f"{err}); is this Home Assistant's address (ha_url)?")
        self._reported = False
        if not ready.is_set():  # it never worked: do not knock again at once
            self._next_try = time.monotonic() + (self.auth_retry_s if auth else self.retry_s)
        log.warning("%s", self.problem)

    async def _session(self, ready: asyncio.Event) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        # max_size: the first event holds every state asked for with all its attributes; 16 MiB is ample.
        async with connect(self.ws_url, open_timeout=self.timeout_s, max_size=2**24) as ws:
            try:
                first = await self._receive(ws, self.timeout_s)
                if first.get("type") != "auth_required":
                    raise MeterError(f"{self.ws_url}: not Home Assistant's WebSocket API (it began with "
                                     f"{str(first)[:60]})")
                await ws.send(json.dumps({"type": "auth", "access_token": self.token}))
                answer = await self._receive(ws, self.timeout_s)
                if answer.get("type") == "auth_invalid":
                    raise _token_refused(self.source, self.token_env, f"auth_invalid: {answer.get('message', '')}")
                if answer.get("type") != "auth_ok":
                    raise MeterError(f"{self.ws_url}: unexpected answer to the login: {str(answer)[:80]}")
                await ws.send(json.dumps({"id": _SUBSCRIPTION, "type": "subscribe_entities",
                                          "entity_ids": list(self.entities)}))
                while True:
                    self._handle(await self._receive(ws, None), ready)
            except ConnectionClosed as err:
                raise MeterError(f"{self.source}: the WebSocket connection was lost ({err})") from None

    async def _receive(self, ws: Any, timeout_s: float | None) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout_s):
                raw = await ws.recv()
        except TimeoutError:
            raise MeterError(f"{self.ws_url}: Home Assistant did not answer within {timeout_s:g} s") from None
        try:
            message = json.loads(raw)
        except ValueError as err:
            raise MeterError(f"{self.ws_url}: a message that is not JSON ({err})") from None
        if not isinstance(message, dict):
            raise MeterError(f"{self.ws_url}: a message that is not a JSON object: {str(message)[:60]}")
        return message

    def _handle(self, message: dict[str, Any], ready: asyncio.Event) -> None:
        if message.get("id") != _SUBSCRIPTION:
            return
        if message.get("type") == "result" and not message.get("success", False):
            error = message.get("error") or {}
            hint = ("; this Home Assistant is too old for it: use ha_api = \"rest\""
                    if error.get("code") == "unknown_command" else "")
            raise MeterError(f"{self.source}: Home Assistant refused subscribe_entities ({error.get('code')}: "
                             f"{error.get('message')}){hint}")
        if message.get("type") == "event" and isinstance(message.get("event"), Mapping):
            apply_entities_event(self.states, message["event"])
            if "a" in message["event"] and not ready.is_set():  # the first event holds the states of now
                self.connects += 1
                ready.set()


# ------------------------------------------------------------------------------------------------ MQTT


class HomeAssistantMqttMeter:
    """The DSMR entities as Home Assistant's ``mqtt_statestream`` integration publishes them on an MQTT broker.

    ``mqtt_statestream`` (``base_topic: homeassistant`` in Home Assistant's ``configuration.yaml``) publishes,
    retained, each entity's state on ``<base_topic>/<domain>/<object_id>/state``; with ``publish_attributes:
    true`` each attribute on ``<base_topic>/<domain>/<object_id>/<attribute>`` (JSON), with ``publish_timestamps:
    true`` ``last_updated`` and ``last_changed`` (ISO 8601) next to it
    (``homeassistant/components/mqtt_statestream/__init__.py``). dwars subscribes to ``.../<object_id>/+`` of
    each meter entity.

    Without ``publish_attributes`` dwars takes the integration's units (kW, kWh, V, A, m³): switch it on when an
    entity is shown in W or Wh. Without ``publish_timestamps`` a value's time is when dwars received it (for the
    retained values right after connecting: the moment of connecting).

    Parameters
    ----------
    host, port : the broker (``mqtt_host``, ``mqtt_port``).
    username, password : the broker login, when it needs one.
    base_topic : ``ha_statestream_topic``.
    entity_prefix, gas_entity, clock : as for :class:`HomeAssistantRestMeter`.
    timeout_s : seconds :meth:`read` waits for the connection and the retained states (default 10).
    settle_s : after the broker confirmed the subscription, a read waits this long for the retained
        values (state, unit and time of each entity arrive as separate messages).
    retry_s : the shortest wait between reconnects (paho-mqtt's own reconnect, on its network thread).
    password_env : the environment variable of the password, for the messages.
    """

    def __init__(self, host: str, port: int = 1883, *, username: str | None = None, password: str | None = None,
                 base_topic: str = DEFAULT_STATESTREAM_TOPIC, entity_prefix: str = DEFAULT_ENTITY_PREFIX,
                 gas_entity: str | None = DEFAULT_GAS_ENTITY, timeout_s: float = 10.0, settle_s: float = 0.3,
                 retry_s: float = 1.0, password_env: str = "DWARS_MQTT_PASSWORD",
                 clock: Callable[[], datetime] | None = None) -> None:
        self.host = host
        self.port = int(port)
        self.username = username
        self.password = password
        self.base_topic = base_topic.strip("/")
        self.entity_prefix = entity_prefix
        self.gas_entity = gas_entity
        self.timeout_s = _check_timeout(timeout_s)
        self.settle_s = float(settle_s)
        self.retry_s = float(retry_s)
        self.password_env = password_env
        self.clock = clock or (lambda: datetime.now(UTC))
        self.source = f"homeassistant mqtt://{host}:{self.port}/{self.base_topic}"
        self.entities = entity_ids(entity_prefix, gas_entity)
        # topic of an entity, without the last level: <base>/<domain>/<object_id>
        self._topics = {f"{self.base_topic}/{e.replace('.', '/', 1)}": e for e in self.entities}
        self.problem: MeterError | None = None  # the latest reason it cannot read, for the messages
        self._pending: MeterError | None = None  # a lost connection or a refusal that read() has not raised yet
        self._lock = threading.Lock()
        self._values: dict[str, dict[str, Any]] = {}  # entity id -> state, unit, updated, arrived
        self._subscribed = threading.Event()
        self._subscribed_at = 0.0
        self._closing = False
        self._client: Any = None

    def topic(self, entity_id: str, leaf: str = "state") -> str:
        """Where ``mqtt_statestream`` publishes ``leaf`` of ``entity_id``."""
        return f"{self.base_topic}/{entity_id.replace('.', '/', 1)}/{leaf}"

    async def start(self) -> HomeAssistantMqttMeter:
        """Connect in the background, on paho-mqtt's network thread (the app calls this before the first read)."""
        if self._client is not None:
            return self
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dwars-meter-{id(self):x}")
        if self.username:
            client.username_pw_set(self.username, self.password)
        client.reconnect_delay_set(min_delay=self.retry_s, max_delay=max(self.retry_s, 30.0))  # type: ignore
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._closing = False
        self._client = client
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        return self

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._closing = True
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    async def read(self) -> MeterReading:
        """The reading the latest published states make (:class:`MeterError` without a connection or states)."""
        if self._client is None:
            await self.start()
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            raise MeterError(str(pending))
        if not self._subscribed.is_set() and not await asyncio.to_thread(self._subscribed.wait, self.timeout_s):
            why = f" ({self.problem})" if self.problem is not None else ""
            raise MeterError(f"{self.source}: not connected to the MQTT broker at {self.host}:{self.port} within "
                             f"{self.timeout_s:g} s{why}")
        await asyncio.sleep(max(0.0, self._subscribed_at + self.settle_s - time.monotonic()))
        with self._lock:
            states = {e: EntityState(e, v["state"], v.get("unit"), v.get("updated") or v["arrived"])
                      for e, v in self._values.items() if "state" in v}
        return reading_from_states(states, self.entity_prefix, self.source, self.gas_entity, self.clock,
                                   self._missing_hint)

    def _missing_hint(self, entity_id: str) -> str:
        return (f"mqtt_statestream has published nothing on {self.topic(entity_id)} (does its include list have "
                f"the entity, and is its base_topic ha_statestream_topic = {self.base_topic!r}?)")

    # paho-mqtt's callbacks, on its network thread.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, props: Any = None) -> None:
        if reason_code.is_failure:
            with self._lock:
                self.problem = self._pending = MeterError(
                    f"{self.source}: the broker refused dwars ({reason_code}); check mqtt_username and the password "
                    f"in {self.password_env}")
            return
        client.subscribe([(f"{prefix}/+", 1) for prefix in self._topics])

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        with self._lock:
            self.problem = MeterError(f"{self.source}: cannot connect to the MQTT broker at {self.host}:{self.port}; "
                                      "is it running, and is mqtt_host right?")

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reason_codes: Any, props: Any = None) -> None:
        self._subscribed_at = time.monotonic()
        with self._lock:
            self.problem = None
        self._subscribed.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, props: Any = None) -> None:
        self._subscribed.clear()
        with self._lock:
            self._values.clear()  # the broker sends the retained values again after the reconnect
            if not self._closing:
                self.problem = self._pending = MeterError(
                    f"{self.source}: the connection to the MQTT broker was lost ({reason_code}); dwars reconnects "
                    "by itself")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        prefix, _, leaf = message.topic.rpartition("/")
        entity_id = self._topics.get(prefix)
        if entity_id is None:
            return
        payload = message.payload.decode("utf-8", errors="replace")
        with self._lock:
            values = self._values.setdefault(entity_id, {})
            if leaf == "state":
                # The time of this state comes after it (its own message); until then: when it arrived.
                values.update(state=payload, arrived=self.clock().astimezone(UTC), updated=None)
            elif leaf == "last_updated":
                try:
                    values["updated"] = _utc(payload, entity_id, "last_updated")
                except MeterError as err:
                    log.warning("%s", err)
            elif leaf == "unit_of_measurement":
                try:
                    unit = json.loads(payload)
                except ValueError:
                    unit = payload
                values["unit"] = None if unit is None else str(unit)


__all__ = [
    "DEFAULT_ENTITY_PREFIX",
    "DEFAULT_GAS_ENTITY",
    "DEFAULT_STATESTREAM_TOPIC",
    "DEFAULT_TOKEN_ENV",
    "EntityState",
    "HomeAssistantMqttMeter",
    "HomeAssistantRestMeter",
    "HomeAssistantWebSocketMeter",
    "apply_entities_event",
    "entity_ids",
    "reading_from_states",
    "state_from_ha",
    "websocket_url",
]
