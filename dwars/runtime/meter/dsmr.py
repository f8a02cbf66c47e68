"""Reading a DSMR smart meter's P1 port: over TCP from ser2net (or any P1-to-network bridge) or a USB P1 cable.

Both carry the same byte stream, one telegram after another (every second on DSMR 5, every ten seconds on
DSMR 4). :class:`TelegramBuffer` finds the telegrams in it, whatever the pieces the bytes arrive in: a telegram
runs from ``/`` to ``!`` + four hex digits + CRLF; bytes before a ``/`` (the tail of a telegram whose start was
missed) are dropped. :meth:`DsmrTcpMeter.read` connects, returns the first complete telegram with a good CRC and
disconnects, so a reading is never older than one telegram interval; damaged telegrams are skipped (logged) and
the next one is awaited. :meth:`DsmrTcpMeter.readings` keeps one connection and yields every telegram, for
watching the grid between decisions.

ser2net serves one client per port by default (and with ``kickolduser`` a new client throws the old one off), so
a runtime that both decides and watches should hold one connection: :class:`LatestReading` streams in the
background, keeps the newest reading for :meth:`~LatestReading.read` and hands every reading to a callback (a
:class:`~dwars.runtime.meter.peak.PeakWatch`, say); it reconnects by itself after a drop.

ser2net, for a P1 cable on ``/dev/ttyUSB0`` of the machine at 192.168.1.20 (``/etc/ser2net.yaml``)::

    connection: &p1
      accepter: tcp,2001
      connector: serialdev,/dev/ttyUSB0,115200n81,local
      options:
        kickolduser: true

and ``DsmrTcpMeter("192.168.1.20", 2001)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from dwars.runtime.meter.reading import MeterError, MeterReading, parse_telegram

log = logging.getLogger(__name__)

_TELEGRAM = re.compile(r"/[^/]*?![0-9A-Fa-f]{4}\r?\n", re.DOTALL)  # the CRC does not cover the line end
MAX_BUFFER = 16_384  # a DSMR telegram is < 3 kB; more unframed bytes than this are noise, not a telegram


class TelegramBuffer:
    """Collects stream bytes and hands out complete telegrams (text from ``/`` to ``!CRC``, CRLF included)."""

    def __init__(self) -> None:
        self._text = ""

    def feed(self, data: bytes) -> list[str]:
        """Add bytes; return the telegrams they complete, oldest first (CRC not checked here)."""
        # Latin-1 maps every byte to one character: line noise never raises, and the CRC sees the bytes as sent.
        self._text += data.decode("latin-1")
        found = _TELEGRAM.findall(self._text)
        if found:
            self._text = self._text[self._text.rindex(found[-1]) + len(found[-1]):]
        if len(self._text) > MAX_BUFFER:
            start = self._text.rfind("/")
            self._text = self._text[start:] if start >= 0 and len(self._text) - start <= MAX_BUFFER else ""
        return found


Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, Callable[[], Awaitable[None]]]]]


class _StreamMeter:
    """What the TCP and the serial meter share: reading telegrams from a byte stream within a time limit."""

    def __init__(self, where: str, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s = {timeout_s}: must be > 0")
        self.where = where
        self.timeout_s = float(timeout_s)
        self._problem = ""

    async def _open(self) -> tuple[asyncio.StreamReader, Callable[[], Awaitable[None]]]:
        raise NotImplementedError

    async def read(self) -> MeterReading:
        """The next complete, undamaged reading (:class:`MeterError` when none comes within ``timeout_s``)."""
        self._problem = ""
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, close = await self._open()
                try:
                    return await self._next(reader, TelegramBuffer())
                finally:
                    await close()
        except TimeoutError:
            raise MeterError(self._silence()) from None

    async def readings(self) -> AsyncIterator[MeterReading]:
        """Every reading, on one connection (:class:`MeterError` when the meter falls silent or the line drops).

        Close it when done, so the connection is closed at once: ``async with contextlib.aclosing(meter.readings())
        as stream: async for reading in stream: ...``.
        """
        self._problem = ""
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, close = await self._open()
        except TimeoutError:
            raise MeterError(self._silence()) from None
        buffer = TelegramBuffer()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        reading = await self._next(reader, buffer)
                except TimeoutError:
                    raise MeterError(self._silence()) from None
                yield reading
        finally:
            await close()

    async def _next(self, reader: asyncio.StreamReader, buffer: TelegramBuffer) -> MeterReading:
        while True:
            try:
                data = await reader.read(4096)
            except OSError as err:
                raise MeterError(f"{self.where}: the connection broke ({err})") from None
            if not data:
                raise MeterError(f"{self.where}: the other side closed the connection before a complete telegram "
                                 f"arrived{self._last_problem()}")
            good: MeterReading | None = None
            for telegram in buffer.feed(data):
                try:
                    good = parse_telegram(telegram, source=self.where)  # the last good one of a burst is the latest
                except MeterError as err:
                    self._problem = str(err)
                    log.warning("%s: telegram skipped: %s", self.where, err)
            if good is not None:
                return good

    def _silence(self) -> str:
        return (f"{self.where}: no complete telegram within {self.timeout_s:g} s (is the P1 cable plugged in, and "
                f"the meter's P1 port on?){self._last_problem()}")

    def _last_problem(self) -> str:
        return f"; last problem: {self._problem}" if self._problem else ""


class DsmrTcpMeter(_StreamMeter):
    """A P1 port behind a TCP bridge (ser2net, a P1 Wi-Fi dongle in raw TCP mode).

    Parameters
    ----------
    host, port : the bridge.
    timeout_s : seconds to wait for a complete telegram, connecting included (default 25: a DSMR 4 meter sends
        every 10 s, and the first telegram after connecting is usually cut).
    """

    def __init__(self, host: str, port: int, timeout_s: float = 25.0) -> None:
        super().__init__(f"dsmr-tcp {host}:{port}", timeout_s)
        self.host = host
        self.port = int(port)

    async def _open(self) -> tuple[asyncio.StreamReader, Callable[[], Awaitable[None]]]:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as err:
            raise MeterError(f"{self.where}: cannot connect ({err.strerror or err}); is ser2net running there?") \
                from None

        async def close() -> None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

        return reader, close


class DsmrSerialMeter(_StreamMeter):
    """A USB P1 cable (115200 baud 8N1, DSMR 4/5), read with serialx, the serial library dsmr-parser brings.

    Parameters
    ----------
    device : the serial port, e.g. ``/dev/ttyUSB0`` (better: its ``/dev/serial/by-id/...`` name, which survives
        re-plugging). serialx also takes ``socket://host:port`` URLs.
    baudrate : 115200 for DSMR 4 and 5.
    timeout_s : as for :class:`DsmrTcpMeter`.

    The port is opened for each :meth:`read` and closed after it, so another program may use it in between.
    """

    def __init__(self, device: str, baudrate: int = 115200, timeout_s: float = 25.0) -> None:
        super().__init__(f"dsmr-serial {device}", timeout_s)
        self.device = device
        self.baudrate = int(baudrate)

    async def _open(self) -> tuple[asyncio.StreamReader, Callable[[], Awaitable[None]]]:
        try:
            import serialx
        except ImportError:
            raise MeterError("reading a USB P1 cable needs the serialx package (it comes with dsmr-parser >= 1.11: "
                             "pip install 'dwars[runtime]')") from None
        try:
            reader, writer = await serialx.open_serial_connection(self.device, baudrate=self.baudrate)
        except (OSError, serialx.SerialException) as err:
            raise MeterError(f"{self.where}: cannot open the serial port ({err}); is the P1 cable plugged in, and "
                             "may this user read it (group dialout)?") from None

        async def close() -> None:
            writer.close()
            with contextlib.suppress(OSError, serialx.SerialException):
                await writer.wait_closed()

        return reader, close


class LatestReading:
    """One streaming connection to a DSMR meter shared by every consumer: the newest reading, always at hand.

    Parameters
    ----------
    meter : a :class:`DsmrTcpMeter` or :class:`DsmrSerialMeter`.
    max_age_s : :meth:`read` returns the newest reading while it arrived at most this long ago (default 15 s:
        a DSMR 4 meter sends every 10 s); otherwise it waits for the next one, up to the meter's ``timeout_s``.
    retry_s : seconds between reconnects after the stream broke (default 5).
    on_reading : called with every reading, in the event loop (keep it short).

    Use ``async with LatestReading(meter) as p1: reading = await p1.read()``.
    """

    def __init__(self, meter: _StreamMeter, max_age_s: float = 15.0, retry_s: float = 5.0,
                 on_reading: Callable[[MeterReading], None] | None = None) -> None:
        self.meter = meter
        self.max_age_s = float(max_age_s)
        self.retry_s = float(retry_s)
        self.on_reading = on_reading
        self.latest: MeterReading | None = None
        self.problem: MeterError | None = None  # why the stream broke last, None while it runs
        self._arrived = -float("inf")  # time.monotonic() of the latest reading: the meter's clock may be off
        self._new = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> LatestReading:
        self._task = asyncio.create_task(self._stream())
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> LatestReading:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def read(self) -> MeterReading:
        """The newest reading, if fresh; else the next one (:class:`MeterError` if none comes in time)."""
        if self.latest is not None and time.monotonic() - self._arrived <= self.max_age_s:
            return self.latest
        self._new.clear()
        try:
            async with asyncio.timeout(self.meter.timeout_s):
                await self._new.wait()
        except TimeoutError:
            why = f" ({self.problem})" if self.problem else ""
            raise MeterError(f"{self.meter.where}: no reading for {time.monotonic() - self._arrived:.0f} s{why}"
                             if self.latest is not None else f"{self.meter.where}: no reading yet{why}") from None
        assert self.latest is not None
        return self.latest

    async def _stream(self) -> None:
        while True:
            try:
                async with contextlib.aclosing(self.meter.readings()) as stream:
                    async for reading in stream:
                        self.latest, self._arrived, self.problem = reading, time.monotonic(), None
                        self._new.set()
                        if self.on_reading is not None:
                            self.on_reading(reading)
            except MeterError as err:
                self.problem = err
                log.warning("%s; reconnecting in %g s", err, self.retry_s)
            await asyncio.sleep(self.retry_s)
