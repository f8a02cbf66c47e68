"""The P1 smart meter: recorded telegrams of real meters, real TCP and serial (pty) streams, a real HTTP server that
answers like the HomeWizard P1 meter, and the simulated meter's telegrams round-tripped through dsmr-parser.

Fixtures and their sources: tests/fixtures/p1/SOURCES.md and tests/fixtures/homewizard/SOURCES.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import threading
import time
import tty
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwars.runtime.meter import (
    DsmrSerialMeter,
    DsmrTcpMeter,
    HomeWizardMeter,
    LatestReading,
    MeterError,
    MeterReading,
    PeakWatch,
    SimulatedP1Server,
    TelegramBuffer,
    Totals,
    build_telegram,
    dsmr_time_to_utc,
    open_meter,
    parse_telegram,
    simulated_p1_server,
    unexpected_peak,
)
from dwars.runtime.meter.simulated import crc16
from dwars.runtime.sim_inverter import _free_port

FIXTURES = Path(__file__).parent / "fixtures"
P1 = FIXTURES / "p1"
HW = FIXTURES / "homewizard"


def recorded(name: str) -> str:
    return (P1 / name).read_bytes().decode("latin-1")


def with_crc(body: str) -> str:
    """A telegram text up to and including '!' with a correct CRC appended (for deliberately edited telegrams)."""
    return f"{body}{crc16(body):04X}\r\n"


def body_of(telegram: str) -> str:
    return telegram[:telegram.index("!") + 1]


# --------------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("name", "expected"), [
    ("dsmr50_iskra_3phase.txt", dict(
        time=datetime(2017, 1, 2, 18, 20, 2, tzinfo=UTC),  # 19:20:02 W(inter) = UTC+1
        import_kw=0.244, export_kw=0.0, import_kwh_total=4.426 + 2.399, export_kwh_total=2.444,
        phase_power_kw=(0.070, 0.032, 0.142), phase_current_a=(0.48, 0.44, 0.86),
        phase_voltage_v=(230.0, 230.0, 229.0), gas_m3_total=0.107)),
    ("dsmr42_kaifa_3phase.txt", dict(
        time=datetime(2016, 11, 13, 19, 57, 57, tzinfo=UTC),
        import_kw=2.027, export_kw=0.0, import_kwh_total=1581.123 + 1435.706, export_kwh_total=0.0,
        phase_power_kw=(0.170, 1.247, 0.209), phase_current_a=(0.0, 6.0, 2.0), phase_voltage_v=None,
        gas_m3_total=981.443)),
    ("emucs171_fluvius_3phase.txt", dict(
        time=datetime(2020, 5, 12, 11, 54, 9, tzinfo=UTC),  # 13:54:09 S(ummer) = UTC+2
        import_kw=0.0, export_kw=0.0, import_kwh_total=0.034 + 15.758, export_kwh_total=0.011,
        phase_power_kw=(0.0, 0.0, 0.0), phase_current_a=(0.0, 0.0, 0.0), phase_voltage_v=(234.7, 234.7, 234.7),
        gas_m3_total=112.384)),  # channel 1 (type 003); the water meter on channel 2 (type 007) is not gas
    ("dsmr42_landisgyr_1phase.txt", dict(
        time=datetime(2016, 3, 17, 21, 10, 58, tzinfo=UTC),
        import_kw=0.187, export_kw=0.0, import_kwh_total=1255.252 + 1284.838, export_kwh_total=0.0,
        phase_power_kw=(0.187,), phase_current_a=(1.0,), phase_voltage_v=None,
        gas_m3_total=1438.997)),  # the gas meter sits on M-Bus channel 2 here
])
def test_recorded_telegrams_of_real_meters(name: str, expected: dict[str, object]) -> None:
    reading = parse_telegram((P1 / name).read_bytes(), source="fixture")
    assert reading.source == "fixture"
    for key, want in expected.items():
        got = getattr(reading, key)
        if isinstance(want, float | tuple):
            assert got == pytest.approx(want, abs=1e-9), key
        else:
            assert got == want, key
    assert reading.net_kw == pytest.approx(expected["import_kw"] - expected["export_kw"])  # type: ignore[operator]


def test_a_damaged_telegram_is_refused_and_both_crcs_are_named() -> None:
    good = recorded("dsmr50_iskra_3phase.txt")
    damaged = good.replace("1-0:1.7.0(00.244*kW)", "1-0:1.7.0(00.844*kW)")
    assert damaged != good
    with pytest.raises(MeterError, match=r"bad CRC: the telegram says 6EEE, its contents give [0-9A-F]{4}"):
        parse_telegram(damaged)


def test_a_truncated_telegram_is_refused() -> None:
    good = recorded("dsmr42_kaifa_3phase.txt")
    with pytest.raises(MeterError, match=r"incomplete telegram: .*last line '1-0:21\.7\.0\(00\.1'"):
        parse_telegram(good[:good.index("1-0:21.7.0") + 15])
    with pytest.raises(MeterError, match="not a P1 telegram"):
        parse_telegram("1-0:1.7.0(00.244*kW)\r\n!6EEE\r\n")


def test_a_dsmr2_telegram_without_crc_is_refused_in_plain_words() -> None:
    v22 = "/ISk5\\2MT382-1004\r\n\r\n0-0:96.1.1(00000000000000)\r\n1-0:1.8.1(00001.001*kWh)\r\n!\r\n"
    with pytest.raises(MeterError, match="no CRC after '!': a DSMR 2 or 3 meter"):
        parse_telegram(v22)


@pytest.mark.parametrize(("line", "message"), [
    ("1-0:1.7.0(00.244*kW)", r"lacks OBIS field 1-0:1\.7\.0 \(power imported now\)"),
    ("1-0:2.7.0(00.000*kW)", r"lacks OBIS field 1-0:2\.7\.0 \(power exported now\)"),
    ("0-0:1.0.0(170102192002W)", r"lacks OBIS field 0-0:1\.0\.0 \(the meter's time\)"),
    ("1-0:1.8.2(000002.399*kWh)", r"lacks OBIS fields 1-0:1\.8\.1 and 1-0:1\.8\.2 \(energy imported"),
])
def test_a_telegram_without_a_required_field_names_the_field(line: str, message: str) -> None:
    body = body_of(recorded("dsmr50_iskra_3phase.txt"))
    assert line in body
    with pytest.raises(MeterError, match=message):
        parse_telegram(with_crc(body.replace(line + "\r\n", "")))


def test_a_line_dsmr_parser_chokes_on_is_a_meter_error() -> None:
    """dsmr-reader's Kaifa recording masks the equipment number with '*': dsmr-parser raises a plain ValueError."""
    body = body_of(recorded("dsmr42_kaifa_3phase.txt")).replace("3960221976967177082151037881335713", "*" * 31)
    with pytest.raises(MeterError, match=r"dsmr-parser could not read the dsmr telegram \(ValueError"):
        parse_telegram(with_crc(body))


def test_a_meter_reporting_in_watts_is_converted_and_a_wrong_unit_is_named() -> None:
    body = body_of(recorded("dsmr50_iskra_3phase.txt"))
    reading = parse_telegram(with_crc(body.replace("1-0:1.7.0(00.244*kW)", "1-0:1.7.0(00244*W)")))
    assert reading.import_kw == pytest.approx(0.244)
    with pytest.raises(MeterError, match=r"OBIS 1-0:1\.7\.0: unit 'kvar', expected kW or W"):
        parse_telegram(with_crc(body.replace("1-0:1.7.0(00.244*kW)", "1-0:1.7.0(00.244*kvar)")))


# ------------------------------------------------------------------------------------------------ time, DST


@pytest.mark.parametrize(("stamp", "utc"), [
    ("240615120000S", "2024-06-15T10:00:00"),  # summer: UTC+2
    ("240115120000W", "2024-01-15T11:00:00"),  # winter: UTC+1
    ("241027023000S", "2024-10-27T00:30:00"),  # the autumn hour that occurs twice: first time (summer time)
    ("241027023000W", "2024-10-27T01:30:00"),  # second time (winter time)
    ("240331015959W", "2024-03-31T00:59:59"),  # the last second before the spring change
    ("240331030000S", "2024-03-31T01:00:00"),  # the first second after it
])
def test_the_dst_flag_gives_the_utc_offset(stamp: str, utc: str) -> None:
    assert dsmr_time_to_utc(stamp) == datetime.fromisoformat(utc).replace(tzinfo=UTC)


@pytest.mark.parametrize("stamp", ["241027023000", "241027023000X", "241327023000W", "24102702300W"])
def test_a_malformed_meter_time_is_refused(stamp: str) -> None:
    with pytest.raises(MeterError, match="meter time"):
        dsmr_time_to_utc(stamp)


@pytest.mark.parametrize(("day", "quarters"), [("2024-10-27", 100), ("2024-03-31", 92)])
def test_a_dst_night_through_builder_and_parser_stays_in_order(day: str, quarters: int) -> None:
    """Every quarter hour of a 25-hour and a 23-hour local day, written as a meter writes it and read back."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Amsterdam")
    start = datetime.fromisoformat(day).replace(tzinfo=tz).astimezone(UTC)
    end = (datetime.fromisoformat(day).replace(tzinfo=tz) + timedelta(days=1)).astimezone(UTC)
    times = [start + timedelta(minutes=15 * k) for k in range(int((end - start).total_seconds() // 900))]
    assert len(times) == quarters
    stamps = [build_telegram(t, (0.4,)).split("0-0:1.0.0(")[1][:13] for t in times]
    parsed = [parse_telegram(build_telegram(t, (0.4,))).time for t in times]
    assert parsed == times
    assert len(set(stamps)) == quarters  # the S/W flag tells the two 02:xx hours apart
    if quarters == 100:
        assert "241027023000S" in stamps and "241027023000W" in stamps


def test_a_reading_needs_utc_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware UTC"):
        MeterReading(datetime(2024, 6, 1, 12), 0.1, 0.0, 1.0, 1.0)


# -------------------------------------------------------------------------------- the simulated meter's telegrams


@pytest.mark.parametrize("name", sorted(p.name for p in P1.glob("*.txt")))
def test_the_builders_crc16_matches_real_meters(name: str) -> None:
    text = recorded(name)
    assert f"{crc16(body_of(text)):04X}" == re.search(r"!([0-9A-F]{4})", text).group(1)  # type: ignore[union-attr]


def test_a_built_telegram_passes_dsmr_parsers_own_crc_check_and_reads_like_a_real_one() -> None:
    from dsmr_parser import telegram_specifications
    from dsmr_parser.parsers import TelegramParser

    text = build_telegram(datetime(2024, 6, 15, 10, 0, 7, tzinfo=UTC), (1.5, 0.25, -3.0),
                          Totals(import_t1_kwh=10.0, import_t2_kwh=20.5, export_t1_kwh=1.25, export_t2_kwh=3.0,
                                 gas_m3=99.125))
    TelegramParser.validate_checksum(text)  # raises on a mismatch
    telegram = TelegramParser(telegram_specifications.V5).parse(text, throw_ex=True)
    assert telegram.P1_MESSAGE_HEADER.value == "50"
    assert telegram.P1_MESSAGE_TIMESTAMP.value == datetime(2024, 6, 15, 10, 0, 7, tzinfo=UTC)
    assert str(telegram.CURRENT_ELECTRICITY_DELIVERY.value) == "1.250"  # 1.5 + 0.25 - 3.0 net, exported
    assert telegram.MBUS_DEVICES[0].MBUS_METER_READING.value == pytest.approx(99.125)
    # Line for line the layout of the recorded DSMR 5 meter: same OBIS codes in the same order.
    codes = [line.split("(")[0] for line in text.split("\r\n") if "(" in line]
    real = [line.split("(")[0] for line in recorded("dsmr50_iskra_3phase.txt").split("\r\n") if "(" in line]
    assert codes == [c for c in real if not c.startswith("0-2:")]  # the recording also has an empty channel 2


def test_the_builder_refuses_what_a_meter_cannot_show() -> None:
    when = datetime(2024, 6, 15, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="1 or 3 phases"):
        build_telegram(when, (1.0, 2.0))
    with pytest.raises(ValueError, match="import_t1_kwh = -1.0: outside"):
        build_telegram(when, (1.0,), Totals(import_t1_kwh=-1.0))
    with pytest.raises(ValueError, match="outside what the meter can show"):
        build_telegram(when, (120.0,))
    with pytest.raises(ValueError, match="timezone-aware"):
        build_telegram(datetime(2024, 6, 15, 10), (1.0,))


_kw = st.floats(min_value=-30.0, max_value=30.0, allow_nan=False)
_kwh = st.floats(min_value=0.0, max_value=999_999.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(phases=st.one_of(st.tuples(_kw), st.tuples(_kw, _kw, _kw)), t1=_kwh, t2=_kwh, e1=_kwh, e2=_kwh,
       gas=st.one_of(st.none(), st.floats(min_value=0.0, max_value=99_999.0)),
       when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)))
def test_builder_to_parser_round_trips_powers_totals_and_time(phases: tuple[float, ...], t1: float, t2: float,
                                                              e1: float, e2: float, gas: float | None,
                                                              when: datetime) -> None:
    reading = parse_telegram(build_telegram(when, phases, Totals(t1, t2, e1, e2, gas)))
    shown = [round(p, 3) for p in phases]  # the meter shows W resolution
    assert reading.phase_power_kw == pytest.approx(shown, abs=1e-9)
    assert reading.net_kw == pytest.approx(sum(shown), abs=1.5e-3)
    assert min(reading.import_kw, reading.export_kw) == 0.0
    assert reading.import_kwh_total == pytest.approx(round(t1, 3) + round(t2, 3), abs=1e-6)
    assert reading.export_kwh_total == pytest.approx(round(e1, 3) + round(e2, 3), abs=1e-6)
    assert reading.gas_m3_total == (None if gas is None else pytest.approx(round(gas, 3), abs=1e-9))
    assert reading.phase_current_a == pytest.approx([abs(p) * 1000.0 / 230.0 for p in shown], abs=0.5 + 1e-9)
    assert reading.time == when.replace(microsecond=0)


def test_the_simulated_meters_counters_run_up_with_the_power() -> None:
    clock = iter(datetime(2024, 6, 15, 10, tzinfo=UTC) + timedelta(hours=h) for h in range(3))
    meter = SimulatedP1Server((1.0, 0.5, 0.5), totals=Totals(100.0, 200.0, 10.0, 20.0), clock=lambda: next(clock))
    readings = [parse_telegram(meter.next_telegram()) for _ in range(2)]
    meter.set_power((-1.0, -1.0, -1.5))
    readings.append(parse_telegram(meter.next_telegram()))
    assert [r.import_kwh_total for r in readings] == pytest.approx([300.0, 302.0, 302.0])  # 2 kW for an hour
    assert [r.export_kwh_total for r in readings] == pytest.approx([30.0, 30.0, 33.5])  # then 3.5 kW exported
    assert readings[2].export_kw == pytest.approx(3.5)


# ------------------------------------------------------------------------------------------- the byte stream


@pytest.mark.parametrize("name", sorted(p.name for p in P1.glob("*.txt")))
def test_the_buffer_finds_a_telegram_fed_byte_by_byte(name: str) -> None:
    data = (P1 / name).read_bytes()
    buffer = TelegramBuffer()
    found = [t for k in range(len(data)) for t in buffer.feed(data[k:k + 1])]
    assert found == [data.decode("latin-1")]


def test_the_buffer_drops_the_tail_of_a_telegram_whose_start_it_missed() -> None:
    a, b = (P1 / "dsmr50_iskra_3phase.txt").read_bytes(), (P1 / "dsmr42_kaifa_3phase.txt").read_bytes()
    buffer = TelegramBuffer()
    assert buffer.feed(a[400:] + b[:300]) == []  # the tail of one telegram, the start of the next
    assert buffer.feed(b[300:] + a[:10]) == [b.decode("latin-1")]
    assert buffer.feed(a[10:]) == [a.decode("latin-1")]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_the_tcp_meter_reads_the_simulated_meter_and_follows_its_powers() -> None:
    async def main() -> tuple[MeterReading, MeterReading, list[MeterReading]]:
        async with simulated_p1_server((1.2, 0.3, -2.0), interval_s=0.05) as p1:
            meter = DsmrTcpMeter("127.0.0.1", p1.port, timeout_s=3)
            first = await meter.read()
            p1.set_power((4.0, 3.5, 2.0))
            second = await meter.read()
            stream = []
            async with contextlib.aclosing(meter.readings()) as readings:
                async for reading in readings:
                    stream.append(reading)
                    if len(stream) == 3:
                        break
            return first, second, stream

    first, second, stream = run(main())  # type: ignore[misc]
    assert first.phase_power_kw == pytest.approx((1.2, 0.3, -2.0))
    assert (first.import_kw, first.export_kw) == pytest.approx((0.0, 0.5))
    assert first.source.startswith("dsmr-tcp 127.0.0.1:")
    assert second.import_kw == pytest.approx(9.5) and second.phase_current_a == (17.0, 15.0, 9.0)
    assert [r.import_kw for r in stream] == pytest.approx([9.5] * 3)
    assert abs((datetime.now(UTC) - stream[-1].time).total_seconds()) < 5  # the meter's clock: now


def test_one_streaming_connection_serves_reads_and_a_watcher_and_survives_a_restart() -> None:
    """ser2net serves one client: LatestReading holds that one connection for the loop and the peak watch."""
    async def main() -> tuple[list[float], list[float], str, float]:
        seen: list[float] = []
        p1 = await SimulatedP1Server((1.0,), interval_s=0.05).start()
        port = p1.port
        meter = DsmrTcpMeter("127.0.0.1", port, timeout_s=0.5)
        async with LatestReading(meter, max_age_s=0.2, retry_s=0.1, on_reading=lambda r: seen.append(r.import_kw)) \
                as latest:
            before = [(await latest.read()).import_kw]
            p1.set_power((3.0,))
            await asyncio.sleep(0.2)
            before.append((await latest.read()).import_kw)
            await p1.close()  # the meter's bridge goes away
            await asyncio.sleep(0.3)
            try:
                await latest.read()
                problem = ""
            except MeterError as err:
                problem = str(err)
            p1 = await SimulatedP1Server((2.0,), interval_s=0.05, port=port).start()  # and comes back
            after = (await latest.read()).import_kw
            await p1.close()
        return before, seen, problem, after

    before, seen, problem, after = run(main())  # type: ignore[misc]
    assert before == pytest.approx([1.0, 3.0])
    assert len(seen) >= 3 and seen[0] == pytest.approx(1.0) and 3.0 in seen
    assert problem.startswith("dsmr-tcp 127.0.0.1:") and "no reading for" in problem
    assert after == pytest.approx(2.0)


def test_a_telegram_split_across_tcp_reads_is_put_back_together() -> None:
    async def main() -> MeterReading:
        async with simulated_p1_server((2.345,), interval_s=0.05, chunk_size=7, chunk_delay_s=0.001) as p1:
            return await DsmrTcpMeter("127.0.0.1", p1.port, timeout_s=5).read()

    reading = run(main())
    assert reading.phase_power_kw == pytest.approx((2.345,))  # type: ignore[union-attr]


async def _raw_meter(pieces: list[bytes], pause_s: float = 0.02) -> tuple[asyncio.Server, int]:
    """A TCP server that sends these byte pieces, with a pause between them, to whoever connects."""
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(pause_s)
        await reader.read()  # stay connected, silent
        writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_a_split_crc_a_damaged_telegram_and_a_cut_one_are_handled_in_the_stream() -> None:
    good = (P1 / "dsmr50_iskra_3phase.txt").read_bytes()
    damaged = good.replace(b"(00.244*kW)", b"(00.844*kW)")
    cut = (P1 / "dsmr42_kaifa_3phase.txt").read_bytes()[:500]
    end = good.index(b"!")
    pieces = [b"junk\r\n" + cut, damaged, good[:end + 3], good[end + 3:]]  # the CRC itself split in two

    async def main() -> MeterReading:
        server, port = await _raw_meter(pieces)
        async with server:
            return await DsmrTcpMeter("127.0.0.1", port, timeout_s=3).read()

    reading = run(main())
    assert reading.import_kw == pytest.approx(0.244)  # type: ignore[union-attr]


def test_only_damaged_telegrams_give_an_error_that_says_why(caplog: pytest.LogCaptureFixture) -> None:
    damaged = (P1 / "dsmr50_iskra_3phase.txt").read_bytes().replace(b"(00.244*kW)", b"(00.844*kW)")

    async def main() -> None:
        server, port = await _raw_meter([damaged] * 3)
        async with server:
            await DsmrTcpMeter("127.0.0.1", port, timeout_s=0.6).read()

    with pytest.raises(MeterError, match=r"no complete telegram within 0.6 s .*; last problem: bad CRC"):
        run(main())
    assert "telegram skipped: bad CRC" in caplog.text


def test_a_silent_meter_gives_an_error_within_the_timeout() -> None:
    async def main() -> None:
        server, port = await _raw_meter([])
        async with server:
            await DsmrTcpMeter("127.0.0.1", port, timeout_s=0.5).read()

    start = time.monotonic()
    with pytest.raises(MeterError, match=r"dsmr-tcp 127\.0\.0\.1:\d+: no complete telegram within 0.5 s"):
        run(main())
    assert time.monotonic() - start < 1.5


def test_an_unreachable_bridge_is_named() -> None:
    port = _free_port("127.0.0.1")
    with pytest.raises(MeterError, match=rf"dsmr-tcp 127\.0\.0\.1:{port}: cannot connect .*ser2net"):
        run(DsmrTcpMeter("127.0.0.1", port, timeout_s=2).read())


def test_a_closed_connection_is_an_error_not_a_hang() -> None:
    async def main() -> None:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"/ISk5\\2MT382-1000\r\n\r\n1-3:0.2.8(50)\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        async with server:
            await DsmrTcpMeter("127.0.0.1", server.sockets[0].getsockname()[1], timeout_s=3).read()

    with pytest.raises(MeterError, match="closed the connection before a complete telegram arrived"):
        run(main())


def test_the_serial_meter_reads_a_real_tty() -> None:
    """A pseudo-terminal stands in for the USB P1 cable: serialx opens and configures it like /dev/ttyUSB0."""
    master, slave = os.openpty()
    tty.setraw(slave)  # a USB serial port passes bytes as they are; a pty must be told to
    data = (P1 / "dsmr42_landisgyr_1phase.txt").read_bytes()

    async def main() -> MeterReading:
        async def meter_talks() -> None:
            for _ in range(20):
                await asyncio.sleep(0.05)
                os.write(master, data[:200])
                await asyncio.sleep(0.01)
                os.write(master, data[200:])

        talking = asyncio.create_task(meter_talks())
        try:
            return await DsmrSerialMeter(os.ttyname(slave), timeout_s=3).read()
        finally:
            talking.cancel()

    try:
        reading = run(main())
    finally:
        os.close(master)
        os.close(slave)
    assert reading.phase_power_kw == (0.187,)  # type: ignore[union-attr]
    assert reading.source.startswith("dsmr-serial /dev/")  # type: ignore[union-attr]


def test_a_missing_serial_port_is_named() -> None:
    with pytest.raises(MeterError, match=r"dsmr-serial /dev/ttyUSB-dwars-absent: cannot open the serial port"):
        run(DsmrSerialMeter("/dev/ttyUSB-dwars-absent", timeout_s=2).read())


# ---------------------------------------------------------------------------------------- HomeWizard P1 meter


class HomeWizard:
    """How the fixture server answers: a fixture file name, or an HTTP status code."""

    answer: ClassVar[str | int] = "data_3phase_all.json"
    paths: ClassVar[list[str]] = []


class HomeWizardHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        HomeWizard.paths.append(self.path)
        if isinstance(HomeWizard.answer, int):
            self.send_error(HomeWizard.answer)
            return
        body = (HW / HomeWizard.answer).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def homewizard() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HomeWizardHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    HomeWizard.answer, HomeWizard.paths = "data_3phase_all.json", []
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


NOON = datetime(2024, 6, 15, 12, tzinfo=UTC)


def test_homewizard_three_phases_with_everything(homewizard: str) -> None:
    reading = run(HomeWizardMeter(homewizard, timeout_s=2, clock=lambda: NOON).read())
    assert HomeWizard.paths == ["/api/v1/data"]
    assert reading == MeterReading(  # -543 W net: exporting 0.543 kW
        time=NOON, import_kw=0.0, export_kw=0.543, import_kwh_total=13779.338, export_kwh_total=0.0,
        phase_power_kw=(-0.676, 0.133, 0.0), phase_current_a=(4.0, 2.0, 0.0), phase_voltage_v=None,
        gas_m3_total=2569.646, source=f"homewizard {homewizard}")


def test_homewizard_one_phase_with_nulls_and_tariff_counters_only(homewizard: str) -> None:
    HomeWizard.answer = "data_1phase_nulls.json"
    reading = run(HomeWizardMeter(homewizard, timeout_s=2, clock=lambda: NOON).read())
    assert reading.phase_power_kw == (-0.676,)  # type: ignore[union-attr]
    assert reading.phase_current_a is None and reading.phase_voltage_v is None  # type: ignore[union-attr]
    assert reading.import_kwh_total == pytest.approx(10830.511 + 2948.827)  # type: ignore[union-attr]
    assert reading.export_kwh_total == pytest.approx(1285.951 + 2876.51)  # type: ignore[union-attr]
    assert reading.net_kw == pytest.approx(-0.543)  # type: ignore[union-attr]


def test_homewizard_without_counters_names_the_field(homewizard: str) -> None:
    HomeWizard.answer = "data_no_counters.json"
    with pytest.raises(MeterError, match="lacks total_power_export_kwh"):
        run(HomeWizardMeter(homewizard, timeout_s=2).read())


def test_homewizard_with_the_api_off_says_how_to_switch_it_on(homewizard: str) -> None:
    HomeWizard.answer = 403
    with pytest.raises(MeterError, match=r"/api/v1/data: HTTP 403 .*switch it on in the HomeWizard Energy app"):
        run(HomeWizardMeter(homewizard, timeout_s=2).read())


def test_homewizard_garbage_is_refused() -> None:
    from dwars.runtime.meter import parse_homewizard

    with pytest.raises(MeterError, match="not JSON"):
        parse_homewizard(b"<html>", NOON)
    with pytest.raises(MeterError, match=r"active_power_w = 'x' is not a number"):
        parse_homewizard(json.dumps({"active_power_w": "x"}), NOON)
    with pytest.raises(MeterError, match="lacks active_power_w"):
        parse_homewizard({"total_power_import_kwh": 1.0}, NOON)


def test_a_dead_homewizard_gives_an_error_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(MeterError, match=rf"http://{host}/api/v1/data: unreachable"):
            run(HomeWizardMeter(host, timeout_s=0.5).read())
        assert time.monotonic() - start < 2.0
    port = _free_port("127.0.0.1")
    with pytest.raises(MeterError, match="unreachable"):
        run(HomeWizardMeter(f"127.0.0.1:{port}", timeout_s=0.5).read())


# ---------------------------------------------------------------------------------- early re-decide, factory


def _at(seconds: float, net_kw: float) -> MeterReading:
    return MeterReading(NOON + timedelta(seconds=seconds), max(net_kw, 0.0), max(-net_kw, 0.0), 0.0, 0.0)


def test_unexpected_peak_compares_with_the_plan() -> None:
    assert unexpected_peak(_at(0, 3.0), expected_grid_kw=0.5, threshold_kw=2.0)
    assert not unexpected_peak(_at(0, 2.4), expected_grid_kw=0.5, threshold_kw=2.0)
    assert not unexpected_peak(_at(0, -3.0), expected_grid_kw=0.5, threshold_kw=2.0)  # export is not a peak
    assert unexpected_peak(_at(0, 1.0), expected_grid_kw=-2.0, threshold_kw=2.0)  # planned export, got import


def test_the_peak_watch_fires_once_per_lasting_peak() -> None:
    watch = PeakWatch(threshold_kw=2.0, hold_s=30.0)  # re-arms below 1.0 kW deviation
    plan = 0.5
    kettle = [watch.update(_at(t, 3.0), plan) for t in range(0, 10)] + [watch.update(_at(10, 0.6), plan)]
    assert not any(kettle)  # 10 s above: too short
    oven = [watch.update(_at(t, 3.5), plan) for t in range(20, 80)]
    assert oven.count(True) == 1 and oven.index(True) == 30  # fires after 30 s, once
    dip = [watch.update(_at(80, 2.0), plan)]  # below the threshold but above the re-arm level
    again = [watch.update(_at(t, 3.5), plan) for t in range(81, 130)]
    assert not any(dip + again)  # not re-armed: no second alarm for the same oven
    watch.update(_at(130, 0.5), plan)  # back to plan: re-armed
    later = [watch.update(_at(t, 3.5), plan) for t in range(140, 175)]
    assert later.count(True) == 1


def test_the_peak_watch_both_ways_and_its_checks() -> None:
    watch = PeakWatch(threshold_kw=1.0, hold_s=0.0, both_ways=True)
    assert watch.update(_at(0, -2.0), 0.0)  # an unexpected export of 2 kW
    watch.reset()
    assert watch.update(_at(1, -2.0), 0.0)
    with pytest.raises(ValueError, match="rearm_kw"):
        PeakWatch(threshold_kw=1.0, rearm_kw=1.5)


def test_open_meter_builds_each_kind_and_refuses_others() -> None:
    assert isinstance(open_meter("dsmr_tcp", host="192.0.2.1", port=2001), DsmrTcpMeter)
    assert isinstance(open_meter("dsmr_serial", device="/dev/ttyUSB0"), DsmrSerialMeter)
    meter = open_meter("homewizard", host="192.0.2.2", timeout_s=3)
    assert isinstance(meter, HomeWizardMeter) and meter.timeout_s == 3.0
    with pytest.raises(MeterError, match="needs the meter's host"):
        open_meter("homewizard")
    with pytest.raises(MeterError, match="must be one of dsmr_tcp, dsmr_serial, homewizard"):
        open_meter("p1_magic")


def test_the_simulated_server_alone_is_a_valid_meter_for_raw_tcp_clients() -> None:
    """What ser2net clients other than dwars see: plain bytes, valid telegrams back to back."""
    async def main() -> bytes:
        async with SimulatedP1Server((0.8,), interval_s=0.02) as p1:
            reader, writer = await asyncio.open_connection("127.0.0.1", p1.port)
            data = b""
            while data.count(b"!") < 3:
                data += await reader.read(4096)
            writer.close()
            return data

    data = run(main())
    telegrams = TelegramBuffer().feed(data)  # type: ignore[arg-type]
    assert len(telegrams) >= 2
    assert all(parse_telegram(t).import_kw == pytest.approx(0.8) for t in telegrams)
