"""EV charger driver over Modbus TCP: read the car's state, set the charging power, keep the charger from falling
back, and hand it back to its own safe current.

:class:`ChargerDriver` drives any charger described by a charger map (:mod:`dwars.runtime.chargermap`; the shipped
``alfen_ng9xx`` follows Alfen's NG9xx table). It is :class:`~dwars.runtime.driver.RegisterDriver`, so it has the
inverter driver's guarantees: writes only to the registers the map's commands write (the allow-list), every value
range-checked before it goes out (:class:`RefusedChargerCommandError`), read back and compared, retried with backoff
(0.1, 0.2, 0.4 ... s) before :class:`ChargerError`, whose message names the charger, the register and the value.

Power and current. :meth:`ChargerDriver.set_power` turns kW into amps per phase, ``kW x 1000 / (phases x V)``,
rounded *down* to the map's step (whole amps) so the charger never draws more than was asked; below the map's
``min_current_a`` (IEC 61851-1: a car may not be offered less than 6 A) it stops (0 A). It returns the kW that
was actually commanded, so the caller's plan and ledger can follow what the car really gets.

Fall back. A charger under an energy manager falls back to its own *safe current* (set by the installer) when no
command came within its communication timeout (Alfen: "validity time", 60 s by default). So the command must be
rewritten in time, not once per interval: the map's ``timeout_s`` is the revert time of the rate limit, a command
is rewritten once half of it has passed, and :meth:`ChargerDriver.refresh` (or :meth:`ChargerDriver.watch`,
beside the control loop) does it. An unchanged command costs no writes in between.

When dwars stops. :meth:`ChargerDriver.fail_safe` writes the map's ``fail_safe`` command (for ``alfen_ng9xx``:
the charger's own safe current, read from it) and stops refreshing: the charger does at once what it would do by
itself one timeout after dwars went quiet. A car keeps charging at the current the installer chose as safe for the
connection, never at a current dwars chose and can no longer watch. dwars that is killed without ``fail_safe``
ends up there too, within the timeout.

Sessions. With a map that reads the meter's total (``energy_kwh``) instead of a session counter, the session's
energy is counted from the total when dwars first saw the car connected; after a restart of dwars mid-session it
counts from the restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dwars.config import EvConfig, SiteConfig
from dwars.runtime.chargermap import ChargerMap, load_charger_map
from dwars.runtime.driver import DeviceError, RegisterDriver
from dwars.runtime.regmap import CommandError

log = logging.getLogger(__name__)

_EPS = 1e-9


class ChargerError(DeviceError):
    """The charger cannot be reached, answers garbage, or does not take a command."""


class RefusedChargerCommandError(ChargerError, ValueError):
    """dwars refused a command before writing it: outside the map's ranges or the charger's power."""


@dataclass(frozen=True)
class ChargerReading:
    """What the charger reports.

    Attributes
    ----------
    time : when it was read (UTC).
    plugged : a car is connected.
    charging_kw : the power it delivers now, kW (AC, all phases).
    session_kwh : energy delivered since the car was connected, kWh.
    current_a : the current it offers the car now, A per phase (dwars's command, or its safe current).
    phases : the phases it charges on (1 or 3).
    """

    time: pd.Timestamp
    plugged: bool
    charging_kw: float
    session_kwh: float
    current_a: float
    phases: int


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def amps_for(power_kw: float, phases: int, voltage_v: float, step_a: float = 1.0, min_a: float = 6.0) -> float:
    """The current per phase (A) that delivers at most ``power_kw``: rounded down to ``step_a``, and 0 below
    ``min_a`` (IEC 61851-1)."""
    amps = math.floor(power_kw * 1000.0 / (phases * voltage_v) / step_a + _EPS) * step_a
    return amps if amps >= min_a - _EPS else 0.0


class ChargerDriver(RegisterDriver):
    """An EV charger at ``host``:``port`` described by a charger map (see the module text).

    Parameters
    ----------
    regmap : a loaded charger map, a built-in name (``"alfen_ng9xx"``) or the path of a map file.
    device_id : Modbus unit id (None: the map's ``unit_id``).
    phases : the phases it is wired for (``ev.phases``); what a reading says when the map has no phases register,
        and what :meth:`set_power` assumes when not told.
    voltage_v : nominal phase voltage (``site.voltage_v``), what :meth:`set_power` assumes when not told, V.
    max_kw : the most :meth:`set_power` may ask (``ev.charger_max_kw``); None: only the map's ranges.
    timeout_s : per request.
    retries : attempts per write before giving up.
    now : the current time (UTC); a simulated clock's in tests and dry runs. The rate limit runs on it too.
    poll_s : how often :meth:`watch` reads the charger and refreshes the command, s.
    """

    noun = "charger"
    error = ChargerError
    refused = RefusedChargerCommandError
    map: ChargerMap

    def __init__(self, regmap: ChargerMap | str | Path, host: str, port: int = 502, device_id: int | None = None,
                 phases: int = 3, voltage_v: float = 230.0, max_kw: float | None = None, timeout_s: float = 2.0,
                 retries: int = 3, now: Callable[[], pd.Timestamp] = _utc_now, poll_s: float = 5.0) -> None:
        super().__init__(regmap if isinstance(regmap, ChargerMap) else load_charger_map(regmap), host, port,
                         device_id, timeout_s, retries, clock=lambda: self.now().timestamp())
        if phases not in (1, 3):
            raise ValueError(f"phases = {phases}: must be 1 or 3")
        self.now = now
        self.phases = int(phases)
        self.voltage_v = float(voltage_v)
        self.max_kw = max_kw
        self.poll_s = float(poll_s)
        self.latest: ChargerReading | None = None
        self.commanded_a: float | None = None  # the current last commanded (0: stopped; None: the charger's own)
        self._command: tuple[str, dict[str, float]] | None = None  # what refresh() keeps alive
        self._session_start_kwh: float | None = None  # the meter's total when the car was connected
        self._device_phases: int | None = None  # what the charger said it charges on, when the map reads it
        self._lock = asyncio.Lock()  # the control loop and watch() share one Modbus connection

    # -- reading ----------------------------------------------------------------------------------

    async def read(self) -> ChargerReading:
        """The car's state and the charger's power, session energy, current and phases."""
        async with self._lock:
            return await self._read_state()

    async def _read_state(self) -> ChargerReading:
        if self.base is None or not self.client.connected:  # not connected yet, or the link dropped: try now
            await self.connect()
        names = self.map.reading
        values = await self._values([self.map.plugged.register, *names.values()])
        for key, name in names.items():
            if not math.isfinite(values[name]):
                raise ChargerError(f"{self.where}: {name} (reading.{key}) reads {values[name]}: not available "
                                   "(is the charger's meter working?)")
        plugged = self.map.plugged(values[self.map.plugged.register])
        charging_kw = values[names["charging_kw"]]
        if charging_kw < -0.1:
            raise ChargerError(f"{self.where}: {names['charging_kw']} = {charging_kw:g} kW: a charger does not "
                               "deliver power back (garbage registers?)")
        if "session_kwh" in names:
            session_kwh = values[names["session_kwh"]]
        else:
            total = values[names["energy_kwh"]]
            if not plugged:
                self._session_start_kwh = None
            elif self._session_start_kwh is None or total < self._session_start_kwh:  # new session, or a new meter
                self._session_start_kwh = total
            session_kwh = total - self._session_start_kwh if self._session_start_kwh is not None else 0.0
        phases = self.phases
        if "phases" in names:
            said = round(values[names["phases"]])
            self._device_phases = said if said in (1, 3) else None
            phases = self._device_phases or self.phases
        reading = ChargerReading(self.now(), plugged, max(charging_kw, 0.0), max(session_kwh, 0.0),
                                 values[names["current_a"]], phases)
        self.latest = reading
        return reading

    # -- commands ---------------------------------------------------------------------------------

    async def set_power(self, kw: float, phases: int | None = None, voltage_v: float | None = None) -> float:
        """Charge at ``kw`` (AC, all phases) on ``phases`` (default: the driver's) at ``voltage_v`` volts per phase
        (default: the driver's); returns the kW actually commanded (amps rounded down to the map's step, 0 below its
        minimum current: then it stops).

        Raises
        ------
        RefusedChargerCommandError
            a negative or unknown power, above ``max_kw``, a current outside the map's range, or phases the charger
            does not charge on; nothing is written then.
        ChargerError
            the charger does not take the command.
        """
        phases = self.phases if phases is None else phases
        voltage_v = self.voltage_v if voltage_v is None else voltage_v
        if not (math.isfinite(kw) and kw >= 0):
            raise RefusedChargerCommandError(f"{self.where}: power_kw = {kw}: must be a number >= 0 (nothing written)")
        if phases not in (1, 3):
            raise RefusedChargerCommandError(f"{self.where}: phases = {phases}: must be 1 or 3 (nothing written)")
        if not (math.isfinite(voltage_v) and voltage_v > 0):
            raise RefusedChargerCommandError(f"{self.where}: voltage_v = {voltage_v}: must be > 0 (nothing written)")
        if self.max_kw is not None and kw > self.max_kw * (1 + _EPS):
            raise RefusedChargerCommandError(f"{self.where}: power_kw = {kw:g}: above the charger's maximum "
                                        f"(ev.charger_max_kw = {self.max_kw:g} kW; nothing written)")
        amps = amps_for(kw, phases, voltage_v, self.map.current_step_a, self.map.min_current_a)
        if amps == 0.0:
            await self.stop()
            return 0.0
        writes_phases = any("phases" in e.names for _, e in self.map.commands["set_current"])
        if not writes_phases and self._device_phases is None and "phases" in self.map.reading:
            await self.read()  # what it charges on decides what the current delivers: know it before the first
        if not writes_phases and self._device_phases not in (None, phases):
            raise RefusedChargerCommandError(f"{self.where}: phases = {phases}: the charger charges on "
                                        f"{self._device_phases} (register {self.map.reading['phases']}); set "
                                        f"ev.phases = {self._device_phases} or change it on the charger "
                                        "(nothing written)")
        await self._run("set_current", {"current_a": amps, "phases": float(phases)}, force=False)
        self.commanded_a = amps
        return amps * phases * voltage_v / 1000.0

    async def stop(self) -> None:
        """Stop charging (the map's ``stop``: for ``alfen_ng9xx`` 0 A, which pauses the car; the session stays
        open), kept up like any command."""
        await self._run("stop", {"phases": float(self.phases)}, force=False)
        self.commanded_a = 0.0

    async def fail_safe(self) -> None:
        """Hand the charger back to its own fallback (the map's ``fail_safe``; ``alfen_ng9xx``: its safe current,
        read from it), written whatever the rate limit says, and stop refreshing (see the module text)."""
        variables = {"phases": float(self.phases)}
        async with self._lock:
            if "safe_current_a" in self.map.reading:
                name = self.map.reading["safe_current_a"]
                if self.base is None or not self.client.connected:
                    await self.connect()
                variables["safe_current_a"] = (await self._values([name]))[name]
            await self._write_command(self._values_for("fail_safe", variables), self.map.timeout_s, force=True)
            self._command = None
            self.commanded_a = None
        shown = f" ({variables['safe_current_a']:g} A)" if "safe_current_a" in variables else ""
        log.warning("%s: handed back to the charger's own safe current%s", self.where, shown)

    async def refresh(self) -> int:
        """Rewrite the last command if the charger no longer holds it or half its timeout has passed (nothing
        otherwise); returns the registers written. Call it more often than every half timeout."""
        async with self._lock:
            if self._command is None:
                return 0
            before = self.writes
            name, variables = self._command
            await self._write_command(self._values_for(name, variables), self.map.timeout_s, force=False)
            return self.writes - before

    async def watch(self, requests: asyncio.Queue[str]) -> None:
        """Beside the control loop (a :class:`~dwars.runtime.live.Runner` watcher): every ``poll_s`` read the
        charger (:attr:`latest`) and :meth:`refresh` the command; when a car is connected or leaves, put a
        plain-words reason on ``requests`` to have the interval decided again. Errors are logged, not raised."""
        was: bool | None = None
        while True:
            try:
                reading = await self.read()
                await self.refresh()
            except (ChargerError, OSError) as err:
                log.warning("%s; trying again in %.0f s", err, self.poll_s)
            else:
                if was is not None and reading.plugged != was:
                    await requests.put("the car was connected to the charger" if reading.plugged else
                                       "the car left the charger")
                was = reading.plugged
            await asyncio.sleep(self.poll_s)

    async def _run(self, command: str, variables: dict[str, float], force: bool) -> None:
        async with self._lock:
            if self.base is None or not self.client.connected:
                await self.connect()
            values = self._values_for(command, variables)
            self._command = (command, variables)
            await self._write_command(values, self.map.timeout_s, force)

    def _values_for(self, command: str, variables: dict[str, float]) -> dict[str, float]:
        try:
            return self.map.command(command, variables)
        except CommandError as err:
            raise RefusedChargerCommandError(f"{self.where}: {err} (nothing written)") from None


def open_charger(ev_cfg: EvConfig | None, site_cfg: SiteConfig, host: str | None = None, port: int | None = None,
                 **options: Any) -> ChargerDriver | None:
    """The driver for ``[ev] charger`` (None for ``none`` or no ``[ev]``): ``modbus`` drives ``ev.charger_map`` at
    ``ev.charger_host``:``ev.charger_port``; ``simulated`` drives ``alfen_ng9xx``, which a
    :class:`~dwars.runtime.sim_charger.SimulatedCharger` serves (at ``host``/``port`` when given). ``options`` go
    to :class:`ChargerDriver` (timeout_s, retries, now, poll_s); ``ev.phases`` and ``site.voltage_v`` become its
    defaults for :meth:`ChargerDriver.set_power`."""
    if ev_cfg is None or ev_cfg.charger == "none":
        return None
    regmap = "alfen_ng9xx" if ev_cfg.charger == "simulated" else ev_cfg.charger_map
    device_id = None if ev_cfg.charger == "simulated" else ev_cfg.charger_unit_id
    return ChargerDriver(regmap, host or ev_cfg.charger_host, port or ev_cfg.charger_port, device_id=device_id,
                         phases=ev_cfg.phases, voltage_v=site_cfg.voltage_v, max_kw=ev_cfg.charger_max_kw, **options)
