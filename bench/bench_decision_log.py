"""Benchmark: cost of writing one decision-log record, with and without fsync, and of reading them back; JSON.

    .venv/bin/python bench/bench_decision_log.py [--n 2000] [--dir DIR]

The records are realistic (two shield interventions with numbers, ~800 bytes). fsync cost depends on the
disk under ``--dir`` (default: the system temp folder), so the file system is reported too; on a Pi, point
``--dir`` at the SD card or SSD the runtime logs to. A quarter-hour runtime writes one record per 900 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dwars.env.modes import Decision, Mode
from dwars.policy.decision_log import DecisionLog, decision_record, encode_record, inputs_digest, read_records


def records(n: int) -> list[dict]:
    times = pd.date_range("2024-06-01", periods=n, freq="15min", tz="UTC")
    out = []
    for i, t in enumerate(times):
        notes = [{"rule": "spread", "reason_en": "no trade: price difference 0.031 EUR/kWh is below the spread 0.070",
                  "reason_nl": "geen handel: prijsverschil € 0,031/kWh is kleiner dan de spread € 0,070",
                  "numbers": {"energy_kwh": 6.1, "export_price": 0.2113, "buy_back_price": 0.18, "spread": 0.07,
                              "difference": 0.031}},
                 {"rule": "power_limit", "reason_en": "power limited to 5 kW", "reason_nl": "vermogen begrensd op 5 kW",
                  "numbers": {"requested_kw": 6.0, "limit_kw": 5.0}}]
        out.append(decision_record(t, "Europe/Amsterdam", "rl", 55.2 + i % 40, Decision(Mode.EXPORT, 6.0, "sell"),
                                   Decision(Mode.MSC, 0.0, "shield: no trade"), notes, inputs_digest(i)))
    return out


def filesystem(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts; 'unknown' elsewhere)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    best = ("", "unknown")
    target = str(path.resolve())
    for m in mounts:
        if len(m) > 2 and (target == m[1] or target.startswith(m[1].rstrip("/") + "/")) and len(m[1]) > len(best[0]):
            best = (m[1], m[2])
    return best[1]


def time_writes(folder: Path, recs: list[dict], fsync: bool, max_bytes: int) -> float:
    path = folder / f"bench_{'fsync' if fsync else 'nofsync'}.jsonl"
    t0 = time.perf_counter()
    with DecisionLog(path, max_bytes=max_bytes, backups=5, fsync=fsync) as log:
        for r in recs:
            log.write(r)
    return (time.perf_counter() - t0) / len(recs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="records per measurement (default %(default)s)")
    parser.add_argument("--dir", help="folder to write in (default: the system temp folder)")
    args = parser.parse_args()
    recs = records(args.n)
    line_bytes = [len(encode_record(r)) for r in recs]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        for r in recs:
            encode_record(r)
        encode_us = (time.perf_counter() - t0) / args.n * 1e6
        t0 = time.perf_counter()
        for i in range(args.n):
            decision_record(pd.Timestamp("2024-06-01", tz="UTC"), "Europe/Amsterdam", "rl", 50.0,
                            Decision(Mode.MSC), Decision(Mode.MSC), recs[i]["interventions"], recs[i]["inputs_digest"])
        record_us = (time.perf_counter() - t0) / args.n * 1e6
        arrays = (np.random.default_rng(0).random(144), np.random.default_rng(1).random(144))
        t0 = time.perf_counter()
        for _ in range(args.n):
            inputs_digest(*arrays)
        digest_us = (time.perf_counter() - t0) / args.n * 1e6
        no_fsync = [time_writes(folder, recs, False, 0) for _ in range(3)]
        with_fsync = [time_writes(folder, recs, True, 0) for _ in range(3)]
        rotating = time_writes(folder, recs, False, 100 * int(np.mean(line_bytes)))  # a rotation every 100 records
        (folder / "bench_fsync.jsonl").unlink()
        t0 = time.perf_counter()
        back = read_records(folder / "bench_nofsync.jsonl")
        read_us = (time.perf_counter() - t0) / len(back) * 1e6
        fs = filesystem(folder)
    print(json.dumps({
        "records": args.n,
        "bytes_per_record": round(float(np.mean(line_bytes)), 1),
        "filesystem": fs,
        "machine": f"{platform.machine()} {platform.system()} {os.cpu_count()} cpu",
        "us_per_write_no_fsync": round(min(no_fsync), 1),
        "us_per_write_fsync": round(min(with_fsync), 1),
        "us_per_write_fsync_median_of_3": round(float(np.median(with_fsync)), 1),
        "us_per_write_no_fsync_rotating_every_100": round(rotating, 1),
        "us_per_encode_only": round(encode_us, 1),
        "us_per_decision_record": round(record_us, 1),
        "us_per_inputs_digest_2x144_floats": round(digest_us, 1),
        "us_per_record_read_back": round(read_us, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
