"""Installation config: one validated TOML file describes a home (site, PV, battery, goals, tariff, strategy).

The keys documented in ``examples/home.toml`` are a contract other tools rely on. Every value is checked
on load; an error names the file, the key, the value and what is allowed, and all problems in a file are
reported at once so a home owner can fix them in one go::

    home.toml: battery.reserve_pct = 120: must be 0..100

Objects here are frozen dataclasses: they describe the parts of a home that do not change. Things that do
change (SoC, prices, irradiance) are passed to functions as arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dwars.errors import DwarsError

Profile = Literal["rustig", "gemiddeld", "maximaal", "inkoop-only"]
PROFILES: tuple[str, ...] = ("rustig", "gemiddeld", "maximaal", "inkoop-only")


class ConfigError(DwarsError, ValueError):
    """A config file (or dict) has one or more invalid values; ``problems`` lists each one."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        lines = [f"{source}: {p}" for p in self.problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class SiteConfig:
    """Where the home is and how big its grid connection is.

    Attributes
    ----------
    latitude, longitude : degrees north / east (WGS84).
    timezone : IANA name used to show times and to interpret local-clock goals ("Europe/Amsterdam").
    grid_limit_kw : connection limit in kW, applied to import and to export (3x25 A is about 17 kW).
    phases : 1 or 3, the phases of the grid connection.
    fuse_a : the main fuse per phase, A (load balancing keeps every phase's current below it).
    voltage_v : nominal phase voltage, V (turns currents into power).
    import_peak_kw : peak shaving: keep the import of every interval at or below this many kW by shedding
        EV and battery charging first and then discharging the battery (never below the reserve); ``None``
        (``false`` in the file) switches it off.
    """

    latitude: float = 52.10
    longitude: float = 5.18
    timezone: str = "Europe/Amsterdam"
    grid_limit_kw: float = 17.0
    phases: int = 3
    fuse_a: float = 25.0
    voltage_v: float = 230.0
    import_peak_kw: float | None = None

    @property
    def phase_limit_kw(self) -> float:
        """What one phase may carry before its fuse blows, kW."""
        return self.fuse_a * self.voltage_v / 1000.0

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class PvArray:
    """One plane of panels. Azimuth: 0/360 north, 90 east, 180 south, 270 west; tilt 0 = flat (degrees)."""

    kwp: float
    azimuth_deg: float = 180.0
    tilt_deg: float = 35.0


@dataclass(frozen=True)
class PvConfig:
    """The PV installation: one or more arrays on one inverter.

    Attributes
    ----------
    arrays : the panel planes (e.g. east and west).
    inverter_kw : AC rating of the inverter in kW; AC output is clipped there.
    system_losses_pct : DC-side losses (soiling, wiring, mismatch, shading, ageing) in %, PVWatts style.
    temperature_coefficient_pct_per_c : power change of the modules per degC above 25 degC, in %/degC.
    inverter_efficiency : nominal DC->AC efficiency of the inverter (0..1).
    """

    arrays: tuple[PvArray, ...]
    inverter_kw: float
    system_losses_pct: float = 14.0
    temperature_coefficient_pct_per_c: float = -0.37
    inverter_efficiency: float = 0.96

    @property
    def kwp(self) -> float:
        """Total DC peak power of all arrays, in kWp."""
        return float(sum(a.kwp for a in self.arrays))


@dataclass(frozen=True)
class BatteryConfig:
    """The home battery, with all powers on the AC side.

    Attributes
    ----------
    capacity_kwh : usable energy content at 100 % SoC, in kWh.
    max_charge_kw, max_discharge_kw : AC power limits in kW.
    round_trip_efficiency : AC->AC; each direction is sqrt(round_trip_efficiency).
    reserve_pct : SoC never used in normal operation (backup power), in % of capacity.
    initial_soc_pct : SoC at the start of a simulation, in %.
    wear_eur_per_kwh : wear cost per kWh discharged (AC side), in EUR/kWh.
    """

    capacity_kwh: float = 10.0
    max_charge_kw: float = 5.0
    max_discharge_kw: float = 5.0
    round_trip_efficiency: float = 0.90
    reserve_pct: float = 20.0
    initial_soc_pct: float = 50.0
    wear_eur_per_kwh: float = 0.02

    @property
    def efficiency_one_way(self) -> float:
        """Efficiency of one direction (charge or discharge): sqrt of the round trip."""
        return math.sqrt(self.round_trip_efficiency)

    @property
    def reserve_kwh(self) -> float:
        return self.capacity_kwh * self.reserve_pct / 100.0

    @property
    def initial_energy_kwh(self) -> float:
        return self.capacity_kwh * self.initial_soc_pct / 100.0


@dataclass(frozen=True)
class GoalsConfig:
    """Hard goals the home owner sets.

    Attributes
    ----------
    endpoint_hour : local clock hour (0..23); every day the SoC must be >= ``endpoint_soc_pct`` at that
        instant. ``None`` disables the endpoint.
    endpoint_soc_pct : SoC target of the endpoint, in %.
    night_end_offset_min : night end = local sunrise minus this many minutes.
    night_end_soc_pct : SoC that must remain at the night end every day, in %. ``None`` disables it.
    """

    endpoint_hour: int | None = 17
    endpoint_soc_pct: float = 90.0
    night_end_offset_min: float = 60.0
    night_end_soc_pct: float | None = 30.0


@dataclass(frozen=True)
class TariffConfig:
    """Tariff keys as written in the file; :mod:`dwars.env.tariff` turns them into prices.

    ``None`` means "take it from the supplier preset, else the built-in default" (for the energy tax: the
    statutory rate of the calendar year of each interval). All EUR/kWh amounts exclude VAT.
    """

    supplier: str = "custom"
    energy_tax_eur_per_kwh: float | None = None
    vat_pct: float | None = None
    purchase_fee_eur_per_kwh: float | None = None
    feed_in_fee_eur_per_kwh: float | None = None
    export_vat: bool | None = None
    base_margin_eur_per_kwh: float | None = None
    net_metering: bool | None = None


@dataclass(frozen=True)
class StrategyConfig:
    """How eager dwars trades: ``rustig`` (strict), ``gemiddeld``, ``maximaal`` (loose), ``inkoop-only``."""

    profile: Profile = "gemiddeld"


@dataclass(frozen=True)
class LoadConfig:
    """The household's consumption when no measured series is given: a standard profile scaled to a year."""

    annual_kwh: float = 2900.0
    profile: str = "E1A"


EV_STRATEGIES: tuple[str, ...] = ("smart", "now")
BOILER_PRIORITIES: tuple[str, ...] = ("battery", "boiler", "auto")
CHARGERS: tuple[str, ...] = ("none", "simulated", "modbus")
SWITCHES: tuple[str, ...] = ("none", "mqtt", "simulated")


@dataclass(frozen=True)
class EvConfig:
    """An electric car and its charger (the ``[ev]`` section; absent = no car).

    The car comes home every day at ``arrive_hour`` having used ``daily_kwh`` and leaves at ``depart_hour``
    (local clock; the next day when it is not later than the arrival), and must then hold at least ``target_pct``
    of its battery again, or as much as the need allows.

    Attributes
    ----------
    capacity_kwh : usable energy of the car's battery, kWh.
    charger_max_kw : the charger's highest power, AC kW (3 x 16 A x 230 V is 11.04 kW).
    charger_min_kw : the lowest power it can charge at, AC kW (IEC 61851: 6 A, so 1.38 kW on one phase, 4.14 on
        three). Chargers take whole amperes: a power is commanded as the amperes at or below it.
    phases : 1 or 3, the phases the charger uses.
    efficiency : AC to the car's battery (0..1).
    arrive_hour, depart_hour : local clock hours of the usual arrival and departure.
    daily_kwh : energy the car uses per day, kWh in its battery.
    target_pct : state of charge the car must have at departure, % of capacity.
    strategy : ``smart`` (solar surplus first, then the cheapest quarters before departure) or ``now`` (charge at full
        power from arrival until the target: what a plain charger does).
    charger : the charger ``dwars run`` commands: ``none``, ``modbus`` (a register map, ``charger_map``: the built-in
        ``alfen_ng9xx`` or a map file) or ``simulated``.
    charger_map, charger_host, charger_port, charger_unit_id : the charger's register map and Modbus TCP address.
    """

    capacity_kwh: float = 60.0
    charger_max_kw: float = 11.04
    charger_min_kw: float = 4.14
    phases: int = 3
    efficiency: float = 0.90
    arrive_hour: int = 18
    depart_hour: int = 7
    daily_kwh: float = 8.0
    target_pct: float = 80.0
    strategy: str = "smart"
    charger: str = "none"
    charger_map: str = "alfen_ng9xx"
    charger_host: str = "127.0.0.1"
    charger_port: int = 502
    charger_unit_id: int = 1


@dataclass(frozen=True)
class BoilerConfig:
    """An electric boiler (or heat-pump boiler) that takes the solar surplus (the ``[boiler]`` section).

    Its own thermostat keeps the tank at ``setpoint_c`` from the grid whatever dwars does; dwars switches it to
    ``boost_c`` when the P1 meter shows an export of at least ``divert_above_kw`` for ``divert_minutes`` and releases
    it when the import rises above ``release_above_kw`` for as long, or when the tank is at ``boost_c``.

    Attributes
    ----------
    power_kw : the electric power it draws when on, kW (on or off).
    cop : heat delivered per kWh of electricity (1.0 for a heating element, about 2.5-3.5 for a heat-pump boiler).
    tank_litres : water in the tank, litres.
    setpoint_c, boost_c : the thermostat's own temperature and the surplus boost temperature, degC.
    cold_water_c : temperature of the water flowing in, degC.
    daily_use_kwh : heat drawn by hot-water use per day, kWh.
    loss_kw : standing heat loss of the tank, kW.
    divert_above_kw, release_above_kw : export that switches it on, import that switches it off, kW.
    divert_minutes : how long each must last before it switches, minutes.
    priority : who gets the surplus first: ``battery``, ``boiler``, or ``auto`` (the boiler only when the sun left
        today will fill the battery anyway).
    switch : what ``dwars run`` switches: ``none``, ``mqtt`` (a command topic, e.g. a Shelly or Tasmota relay or a
        Home Assistant automation) or ``simulated``.
    mqtt_topic, payload_on, payload_off : the command topic and its payloads.
    """

    power_kw: float = 2.0
    cop: float = 1.0
    tank_litres: float = 120.0
    setpoint_c: float = 55.0
    boost_c: float = 70.0
    cold_water_c: float = 10.0
    daily_use_kwh: float = 4.0
    loss_kw: float = 0.04
    divert_above_kw: float = 1.5
    release_above_kw: float = 0.5
    divert_minutes: float = 2.0
    priority: str = "auto"
    switch: str = "none"
    mqtt_topic: str = "cmnd/boiler/POWER"
    payload_on: str = "ON"
    payload_off: str = "OFF"


VOLTAGE_SOURCES: tuple[str, ...] = ("meter", "inverter")


@dataclass(frozen=True)
class VoltageConfig:
    """Grid-voltage protection (the ``[voltage]`` section): keep the PV inverter online on a high-voltage street.

    A PV inverter disconnects when the 10-minute mean of its grid voltage exceeds ``trip_v`` (253 V: EN 50160 and
    the Dutch grid code, 230 V + 10 %). dwars switches to high-voltage mode when the rolling ``window_minutes``
    mean reaches ``trip_v - margin_v``: the battery takes the solar surplus (never trading: charging from own PV
    needs no spread), then the boiler of ``[boiler]`` when the export goes on; it releases when the mean has
    fallen below ``trip_v - margin_v - hysteresis_v``.

    Attributes
    ----------
    trip_v : the inverter's trip level for the 10-minute mean voltage, V.
    margin_v : act this many V below ``trip_v``.
    hysteresis_v : release this many V below the activation level.
    window_minutes : length of the rolling mean, minutes.
    source : where ``dwars run`` reads the voltage: ``meter`` (the P1 meter's per-phase voltage) or ``inverter``
        (the inverter's grid voltage over Modbus).
    boiler : also switch on the boiler when the battery cannot take the whole surplus.
    boiler_export_kw : the export (kW) still on the P1 meter in high-voltage mode that switches the boiler on.
    street_base_v, street_rise_v : the simulator's street: its voltage without sun, V, and how much the
        neighbours' PV raises it at full sun, V (a scenario's ``grid_voltage_v`` column replaces the two).
    rise_v_per_kw : how much the home's own export raises the voltage at its connection, V per kW (the cable
        to the street; an import lowers it as much).
    """

    trip_v: float = 253.0
    margin_v: float = 2.0
    hysteresis_v: float = 2.0
    window_minutes: float = 10.0
    source: str = "meter"
    boiler: bool = True
    boiler_export_kw: float = 0.3
    street_base_v: float = 236.0
    street_rise_v: float = 14.0
    rise_v_per_kw: float = 0.8

    @property
    def act_v(self) -> float:
        """The mean voltage (V) at which high-voltage mode starts."""
        return self.trip_v - self.margin_v

    @property
    def release_v(self) -> float:
        """The mean voltage (V) below which high-voltage mode ends."""
        return self.act_v - self.hysteresis_v


INVERTERS: tuple[str, ...] = ("sunspec", "huawei_sun2000", "simulated")
METERS: tuple[str, ...] = ("none", "dsmr_tcp", "dsmr_serial", "homewizard", "homeassistant")
HA_APIS: tuple[str, ...] = ("websocket", "rest", "mqtt")
PRICE_SOURCES: tuple[str, ...] = ("energyzero", "entsoe")
WEATHER_SOURCES: tuple[str, ...] = ("open-meteo", "clearsky")


@dataclass(frozen=True)
class RuntimeConfig:
    """How ``dwars run`` reaches the house: inverter, meter, feeds, Home Assistant, where it keeps its files.

    Attributes
    ----------
    controller : the controller that decides (``rl``: the shipped policy; ``rule``, ``mpc``, ``mpc_shield``).
    minutes : the decision interval (15 or 60).
    inverter : ``sunspec`` (model 124), a vendor map name (``huawei_sun2000``: forcible charge/discharge), a path to
        a map file (``.toml``), or ``simulated`` (a simulated inverter on 127.0.0.1, for trying dwars out).
    inverter_host, inverter_port, inverter_unit_id : its Modbus TCP address.
    meter : the P1 smart meter: ``none``, ``dsmr_tcp`` (a P1 cable behind ser2net), ``dsmr_serial`` (a USB P1
        cable at ``meter_device``), ``homewizard`` (the HomeWizard P1 meter's local API) or ``homeassistant``
        (the entities of Home Assistant's DSMR integration: no splitter, the P1 port keeps serving Home Assistant).
    ha_url : Home Assistant's address for ``meter = "homeassistant"`` (``http://homeassistant.local:8123``).
    ha_token_env : the environment variable that holds a long-lived access token of Home Assistant.
    ha_api : how the meter's entities are read: ``websocket`` (pushed as they change), ``rest`` (polled) or
        ``mqtt`` (Home Assistant's ``mqtt_statestream`` on the ``mqtt_host`` broker, under ``ha_statestream_topic``).
    ha_entity_prefix : the DSMR entities' common start (``sensor.electricity_meter_``: the integration's default).
    ha_statestream_topic : the base topic of ``mqtt_statestream``.
    prices : ``energyzero`` (no account needed) or ``entsoe`` (needs a token in the environment variable named
        by ``entsoe_token_env``); the other one is the fall-back, and the disk cache after that.
    prices_url, weather_url : another address for the price or weather service ("" = the public one; a local
        mirror or a test server).
    weather : ``open-meteo`` (irradiance forecast) or ``clearsky`` (clear sky x the recent clear-sky index).
    mqtt_host : Home Assistant's MQTT broker ("" = no Home Assistant); the password comes from the environment
        variable named by ``mqtt_password_env``.
    data_dir : decision log, price cache and load history (relative paths are relative to the config file).
    """

    controller: str = "rl"
    minutes: int = 15
    inverter: str = "sunspec"
    inverter_host: str = "127.0.0.1"
    inverter_port: int = 502
    inverter_unit_id: int = 1
    meter: str = "none"
    meter_host: str = ""
    meter_port: int = 2001
    meter_device: str = "/dev/ttyUSB0"
    ha_url: str = "http://homeassistant.local:8123"
    ha_token_env: str = "DWARS_HA_TOKEN"
    ha_api: str = "websocket"
    ha_entity_prefix: str = "sensor.electricity_meter_"
    ha_statestream_topic: str = "homeassistant"
    prices: str = "energyzero"
    entsoe_token_env: str = "ENTSOE_TOKEN"
    prices_url: str = ""
    weather: str = "open-meteo"
    weather_url: str = ""
    mqtt_host: str = ""
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password_env: str = "DWARS_MQTT_PASSWORD"
    data_dir: str = "dwars-data"


@dataclass(frozen=True)
class Installation:
    """A whole home: everything :func:`load_config` reads from one TOML file."""

    site: SiteConfig = field(default_factory=SiteConfig)
    pv: PvConfig | None = None
    battery: BatteryConfig = field(default_factory=BatteryConfig)
    goals: GoalsConfig = field(default_factory=GoalsConfig)
    tariff: TariffConfig = field(default_factory=TariffConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    load: LoadConfig = field(default_factory=LoadConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    ev: EvConfig | None = None
    boiler: BoilerConfig | None = None
    voltage: VoltageConfig | None = None
    name: str = "home"

    def replace(self, **changes: Any) -> Installation:
        """A copy with whole sections replaced (for domain randomisation); the result is validated."""
        new = dataclasses.replace(self, **changes)
        validate_installation(new)
        return new


# --------------------------------------------------------------------------------------------------
# Validation rules. One table per section: key -> (kind, check). Kinds convert and type-check the raw
# TOML value; checks return an error text or None.
# --------------------------------------------------------------------------------------------------

Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class _Range:
    """A numeric range check that also tells its bounds (:func:`key_range`)."""

    lo: float
    hi: float
    lo_open: bool = False

    def __call__(self, v: float) -> str | None:
        if (v > self.lo if self.lo_open else v >= self.lo) and v <= self.hi:
            return None
        return (f"must be more than {self.lo:g} and at most {self.hi:g}" if self.lo_open
                else f"must be {self.lo:g}..{self.hi:g}")


def _range(lo: float, hi: float, *, lo_open: bool = False) -> Check:
    return _Range(lo, hi, lo_open)


def _one_of(options: tuple[str, ...] | tuple[int, ...]) -> Check:
    def check(v: str | int) -> str | None:
        return None if v in options else f"must be one of {', '.join(map(str, options))}"

    return check


def _inverter(v: str) -> str | None:
    if v in INVERTERS or v.endswith(".toml"):
        return None
    return f"must be one of {', '.join(INVERTERS)}, or the path of a register map file ending in .toml"


def _timezone(v: str) -> str | None:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return "must be an IANA time zone name such as Europe/Amsterdam"
    return None


_NUM = "number"
_INT = "integer"
_STR = "text"
_BOOL = "true/false"

_SCHEMA: dict[str, dict[str, tuple[str, Check | None]]] = {
    "site": {
        "latitude": (_NUM, _range(-90, 90)),
        "longitude": (_NUM, _range(-180, 180)),
        "timezone": (_STR, _timezone),
        "grid_limit_kw": (_NUM, _range(0, 1000, lo_open=True)),
        "phases": (_INT, _one_of((1, 3))),
        "fuse_a": (_NUM, _range(0, 1000, lo_open=True)),
        "voltage_v": (_NUM, _range(100, 500)),
        "import_peak_kw": (_NUM, _range(0, 1000, lo_open=True)),
    },
    "pv": {
        "inverter_kw": (_NUM, _range(0, 1000, lo_open=True)),
        "system_losses_pct": (_NUM, _range(0, 99)),
        "temperature_coefficient_pct_per_c": (_NUM, _range(-2, 0)),
        "inverter_efficiency": (_NUM, _range(0.5, 1)),
    },
    "pv.arrays": {
        "kwp": (_NUM, _range(0, 1000, lo_open=True)),
        "azimuth_deg": (_NUM, _range(0, 360)),
        "tilt_deg": (_NUM, _range(0, 90)),
    },
    "battery": {
        "capacity_kwh": (_NUM, _range(0, 1000, lo_open=True)),
        "max_charge_kw": (_NUM, _range(0, 1000, lo_open=True)),
        "max_discharge_kw": (_NUM, _range(0, 1000, lo_open=True)),
        "round_trip_efficiency": (_NUM, _range(0, 1, lo_open=True)),
        "reserve_pct": (_NUM, _range(0, 100)),
        "initial_soc_pct": (_NUM, _range(0, 100)),
        "wear_eur_per_kwh": (_NUM, _range(0, 5)),
    },
    "goals": {
        "endpoint_hour": (_INT, _range(0, 23)),
        "endpoint_soc_pct": (_NUM, _range(0, 100)),
        "night_end_offset_min": (_NUM, _range(-600, 600)),
        "night_end_soc_pct": (_NUM, _range(0, 100)),
    },
    "tariff": {
        "supplier": (_STR, None),  # checked against the preset table by dwars.env.tariff
        "energy_tax_eur_per_kwh": (_NUM, _range(0, 2)),
        "vat_pct": (_NUM, _range(0, 100)),
        "purchase_fee_eur_per_kwh": (_NUM, _range(-1, 1)),
        "feed_in_fee_eur_per_kwh": (_NUM, _range(-1, 1)),
        "export_vat": (_BOOL, None),
        "base_margin_eur_per_kwh": (_NUM, _range(0, 2)),
        "net_metering": (_BOOL, None),
    },
    "strategy": {
        "profile": (_STR, _one_of(PROFILES)),
    },
    "load": {
        "annual_kwh": (_NUM, _range(0, 1_000_000, lo_open=True)),
        "profile": (_STR, _one_of(("E1A",))),
    },
    "ev": {
        "capacity_kwh": (_NUM, _range(0, 500, lo_open=True)),
        "charger_max_kw": (_NUM, _range(0, 100, lo_open=True)),
        "charger_min_kw": (_NUM, _range(0, 100)),
        "phases": (_INT, _one_of((1, 3))),
        "efficiency": (_NUM, _range(0.5, 1)),
        "arrive_hour": (_INT, _range(0, 23)),
        "depart_hour": (_INT, _range(0, 23)),
        "daily_kwh": (_NUM, _range(0, 500)),
        "target_pct": (_NUM, _range(0, 100)),
        "strategy": (_STR, _one_of(EV_STRATEGIES)),
        "charger": (_STR, _one_of(CHARGERS)),
        "charger_map": (_STR, None),
        "charger_host": (_STR, None),
        "charger_port": (_INT, _range(1, 65535)),
        "charger_unit_id": (_INT, _range(0, 247)),
    },
    "boiler": {
        "power_kw": (_NUM, _range(0, 50, lo_open=True)),
        "cop": (_NUM, _range(0.5, 8)),
        "tank_litres": (_NUM, _range(0, 5000, lo_open=True)),
        "setpoint_c": (_NUM, _range(20, 95)),
        "boost_c": (_NUM, _range(20, 95)),
        "cold_water_c": (_NUM, _range(0, 30)),
        "daily_use_kwh": (_NUM, _range(0, 100)),
        "loss_kw": (_NUM, _range(0, 5)),
        "divert_above_kw": (_NUM, _range(0, 100)),
        "release_above_kw": (_NUM, _range(0, 100)),
        "divert_minutes": (_NUM, _range(0, 120)),
        "priority": (_STR, _one_of(BOILER_PRIORITIES)),
        "switch": (_STR, _one_of(SWITCHES)),
        "mqtt_topic": (_STR, None),
        "payload_on": (_STR, None),
        "payload_off": (_STR, None),
    },
    "voltage": {
        "trip_v": (_NUM, _range(200, 300)),
        "margin_v": (_NUM, _range(0, 30)),
        "hysteresis_v": (_NUM, _range(0, 30, lo_open=True)),
        "window_minutes": (_NUM, _range(0, 60, lo_open=True)),
        "source": (_STR, _one_of(VOLTAGE_SOURCES)),
        "boiler": (_BOOL, None),
        "boiler_export_kw": (_NUM, _range(0, 100)),
        "street_base_v": (_NUM, _range(150, 300)),
        "street_rise_v": (_NUM, _range(0, 60)),
        "rise_v_per_kw": (_NUM, _range(0, 20)),
    },
    "runtime": {
        "controller": (_STR, _one_of(("rl", "rule", "mpc", "mpc_shield", "msc"))),
        "minutes": (_INT, _one_of((15, 60))),
        "inverter": (_STR, _inverter),
        "inverter_host": (_STR, None),
        "inverter_port": (_INT, _range(1, 65535)),
        "inverter_unit_id": (_INT, _range(0, 247)),
        "meter": (_STR, _one_of(METERS)),
        "meter_host": (_STR, None),
        "meter_port": (_INT, _range(1, 65535)),
        "meter_device": (_STR, None),
        "ha_url": (_STR, None),
        "ha_token_env": (_STR, None),
        "ha_api": (_STR, _one_of(HA_APIS)),
        "ha_entity_prefix": (_STR, None),
        "ha_statestream_topic": (_STR, None),
        "prices": (_STR, _one_of(PRICE_SOURCES)),
        "entsoe_token_env": (_STR, None),
        "prices_url": (_STR, None),
        "weather": (_STR, _one_of(WEATHER_SOURCES)),
        "weather_url": (_STR, None),
        "mqtt_host": (_STR, None),
        "mqtt_port": (_INT, _range(1, 65535)),
        "mqtt_username": (_STR, None),
        "mqtt_password_env": (_STR, None),
        "data_dir": (_STR, None),
    },
}
_TOP_LEVEL = ("name", *(s for s in _SCHEMA if "." not in s))
# Goals may be switched off by writing `false` instead of a number (TOML has no null).
_DISABLEABLE = {("goals", "endpoint_hour"), ("goals", "night_end_soc_pct"), ("site", "import_peak_kw")}


def key_range(section: str, key: str) -> tuple[float, float]:
    """(min, max) the validator allows for a numeric key such as ``("battery", "reserve_pct")``, so a user
    interface never offers a value the file would refuse. ValueError for a key without a closed range."""
    _, check = _SCHEMA[section][key]
    if not isinstance(check, _Range) or check.lo_open:
        raise ValueError(f"{section}.{key}: the config validator has no closed range for it")
    return check.lo, check.hi


def _convert(kind: str, value: Any) -> Any:
    """Convert a TOML value to the kind, or raise TypeError with a short reason."""
    if kind == _NUM:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("must be a number")
        if not math.isfinite(float(value)):
            raise TypeError("must be a finite number")
        return float(value)
    if kind == _INT:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError("must be a whole number")
        return value
    if kind == _STR:
        if not isinstance(value, str):
            raise TypeError("must be text in quotes")
        return value
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise TypeError("must be true or false")
        return value
    raise AssertionError(kind)  # pragma: no cover - schema typo


def unknown_key(where: str, key: str, allowed: Sequence[str]) -> str:
    """The problem line for an unknown ``key`` (prefixed by ``where``), with the closest known key as a hint or,
    without one, the list of known keys. Every TOML reader of dwars words it this way."""
    hint = difflib.get_close_matches(key, list(allowed), n=1)
    extra = f"; did you mean {hint[0]}?" if hint else f"; known keys: {', '.join(allowed)}"
    return f"{where}{key}: unknown key{extra}"


def _read_section(
    raw: Mapping[str, Any], section: str, problems: list[str], prefix: str | None = None
) -> dict[str, Any]:
    schema = _SCHEMA[section]
    prefix = f"{section}." if prefix is None else prefix
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in schema:
            if section == "pv" and key == "arrays":
                continue
            allowed = [*schema, "arrays"] if section == "pv" else list(schema)
            problems.append(unknown_key(prefix, key, allowed))
            continue
        if value is False and (section, key) in _DISABLEABLE:
            out[key] = None
            continue
        kind, check = schema[key]
        try:
            converted = _convert(kind, value)
        except TypeError as err:
            problems.append(f"{prefix}{key} = {value!r}: {err}")
            continue
        reason = check(converted) if check else None
        if reason:
            shown = f"{value!r}" if isinstance(value, str) else f"{value}"
            problems.append(f"{prefix}{key} = {shown}: {reason}")
            continue
        out[key] = converted
    return out


def installation_from_dict(raw: Mapping[str, Any], source: str = "config") -> Installation:
    """Build and validate an :class:`Installation` from a parsed TOML mapping.

    Raises
    ------
    ConfigError
        listing every problem found, each naming the key, the value and the allowed range.
    """
    problems: list[str] = []
    for key in raw:
        if key not in _TOP_LEVEL:
            problems.append(unknown_key("", key, _TOP_LEVEL))

    def section(name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, Mapping):
            problems.append(f"{name}: must be a [{name}] table")
            return {}
        return _read_section(value, name, problems)

    site = SiteConfig(**section("site"))
    battery = BatteryConfig(**section("battery"))
    goals = GoalsConfig(**section("goals"))
    tariff = TariffConfig(**section("tariff"))
    strategy = StrategyConfig(**section("strategy"))
    load = LoadConfig(**section("load"))
    runtime = RuntimeConfig(**section("runtime"))
    ev = EvConfig(**section("ev")) if "ev" in raw else None
    boiler = BoilerConfig(**section("boiler")) if "boiler" in raw else None
    voltage = VoltageConfig(**section("voltage")) if "voltage" in raw else None

    pv: PvConfig | None = None
    if "pv" in raw:
        pv_raw = raw["pv"]
        if not isinstance(pv_raw, Mapping):
            problems.append("pv: must be a [pv] table")
        else:
            pv_keys = _read_section(pv_raw, "pv", problems)
            arrays_raw = pv_raw.get("arrays")
            arrays: list[PvArray] = []
            if not isinstance(arrays_raw, list) or not arrays_raw:
                problems.append(
                    "pv.arrays: must list at least one array, e.g. "
                    "arrays = [{kwp = 5.0, azimuth_deg = 180, tilt_deg = 35}]"
                )
            else:
                for i, arr in enumerate(arrays_raw):
                    where = f"pv.arrays[{i}]."
                    if not isinstance(arr, Mapping):
                        problems.append(f"pv.arrays[{i}]: must be a table like {{kwp = 5.0}}")
                        continue
                    vals = _read_section(arr, "pv.arrays", problems, prefix=where)
                    if "kwp" not in arr:
                        problems.append(f"{where}kwp: missing (peak power of the array in kWp)")
                        continue
                    if "kwp" in vals:
                        arrays.append(PvArray(**vals))
            if "inverter_kw" not in pv_raw:
                problems.append("pv.inverter_kw: missing (AC rating of the inverter in kW)")
            if arrays and "inverter_kw" in pv_keys:
                pv = PvConfig(arrays=tuple(arrays), **pv_keys)

    name = raw.get("name", "home")
    if not isinstance(name, str):
        problems.append(f"name = {name!r}: must be text in quotes")
        name = "home"

    if problems:
        raise ConfigError(problems, source)
    inst = Installation(
        site=site, pv=pv, battery=battery, goals=goals, tariff=tariff, strategy=strategy, load=load,
        runtime=runtime, ev=ev, boiler=boiler, voltage=voltage, name=name,
    )
    validate_installation(inst, source)
    return inst


def validate_installation(inst: Installation, source: str = "config") -> None:
    """Checks that involve more than one key (the per-key ranges are checked while reading).

    Raises
    ------
    ConfigError
        e.g. when the reserve lies above the endpoint target.
    """
    problems: list[str] = []
    b, g = inst.battery, inst.goals
    if g.endpoint_hour is not None and g.endpoint_soc_pct < b.reserve_pct:
        problems.append(
            f"goals.endpoint_soc_pct = {g.endpoint_soc_pct:g}: must be at least battery.reserve_pct "
            f"({b.reserve_pct:g})"
        )
    if g.night_end_soc_pct is not None and g.night_end_soc_pct < b.reserve_pct:
        problems.append(
            f"goals.night_end_soc_pct = {g.night_end_soc_pct:g}: must be at least battery.reserve_pct "
            f"({b.reserve_pct:g})"
        )
    if b.initial_soc_pct < b.reserve_pct:
        problems.append(
            f"battery.initial_soc_pct = {b.initial_soc_pct:g}: must be at least battery.reserve_pct "
            f"({b.reserve_pct:g})"
        )
    if inst.ev is not None:
        ev = inst.ev
        if ev.charger_min_kw > ev.charger_max_kw:
            problems.append(f"ev.charger_min_kw = {ev.charger_min_kw:g}: must be at most ev.charger_max_kw "
                            f"({ev.charger_max_kw:g})")
        if ev.daily_kwh > ev.capacity_kwh * ev.target_pct / 100.0:
            problems.append(f"ev.daily_kwh = {ev.daily_kwh:g}: must be at most what the car holds at its target "
                            f"({ev.capacity_kwh * ev.target_pct / 100.0:g} kWh)")
        if ev.arrive_hour == ev.depart_hour:
            problems.append(f"ev.depart_hour = {ev.depart_hour}: must differ from ev.arrive_hour")
    if inst.boiler is not None and inst.boiler.boost_c < inst.boiler.setpoint_c:
        problems.append(f"boiler.boost_c = {inst.boiler.boost_c:g}: must be at least boiler.setpoint_c "
                        f"({inst.boiler.setpoint_c:g})")
    if inst.boiler is not None and inst.boiler.setpoint_c <= inst.boiler.cold_water_c:
        problems.append(f"boiler.setpoint_c = {inst.boiler.setpoint_c:g}: must be above boiler.cold_water_c "
                        f"({inst.boiler.cold_water_c:g})")
    s_ = inst.site
    if s_.import_peak_kw is not None and s_.import_peak_kw > s_.grid_limit_kw:
        problems.append(f"site.import_peak_kw = {s_.import_peak_kw:g}: must be at most site.grid_limit_kw "
                        f"({s_.grid_limit_kw:g})")
    v = inst.voltage
    if v is not None and v.street_base_v >= v.trip_v:
        problems.append(f"voltage.street_base_v = {v.street_base_v:g}: must be below voltage.trip_v ({v.trip_v:g})")
    r = inst.runtime
    if r.meter == "homeassistant" and not r.ha_url.startswith(("http://", "https://")):
        problems.append(f"runtime.ha_url = {r.ha_url!r}: must start with http:// or https://")
    if r.meter == "homeassistant" and r.ha_api == "mqtt" and not r.mqtt_host:
        problems.append("runtime.ha_api = 'mqtt': needs runtime.mqtt_host (the broker Home Assistant's "
                        "mqtt_statestream publishes to)")
    if r.meter in ("dsmr_tcp", "homewizard") and not r.meter_host:
        problems.append(f"runtime.meter = {r.meter!r}: needs runtime.meter_host (the meter's IP address or name)")
    if inst.tariff.supplier != "custom":
        from dwars.env.tariff import supplier_presets  # deferred: the tariff module imports this one

        presets = supplier_presets()
        if inst.tariff.supplier not in presets:
            problems.append(f"tariff.supplier = {inst.tariff.supplier!r}: unknown; choose custom or one of "
                            f"{', '.join(sorted(presets))}")
    if problems:
        raise ConfigError(problems, source)


def load_config(path: str | Path) -> Installation:
    """Read and validate an installation TOML file.

    Raises
    ------
    ConfigError
        when the file is missing, is not valid TOML, or has invalid values (all of them listed).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(["file not found"], str(path)) from None
    except OSError as err:
        raise ConfigError([f"cannot be read: {err.strerror}"], str(path)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"not valid TOML: {err}"], str(path)) from None
    inst = installation_from_dict(raw, source=str(path))
    if "name" not in raw:
        inst = dataclasses.replace(inst, name=path.stem)
    return inst
