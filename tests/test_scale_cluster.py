"""The same commands on a Ray cluster: a real head started with `ray start` on 127.0.0.1, joined with --address."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head of 2 CPUs in its own process group (stopped by that group, never `ray stop`, which would stop
    every Ray on the machine: the other test workers' too). Yields its address and the environment that holds its
    token: a client runs in a process of its own, because Ray keeps the first token it read for the life of a
    process (this test worker may have started a local Ray before)."""
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    # Its own token, not the shared ~/.ray/auth_token that local Ray instances of other test workers may write.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **auth}
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
                             f"--temp-dir={temp}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    else:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail(f"the Ray head on {address} did not start within 60 s")
    try:
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def test_a_fleet_runs_on_a_cluster_given_by_address(cluster: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    address, env = cluster
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        "[fleet]\n"
        f'homes = ["{ROOT / "examples" / "home.toml"}", "{ROOT / "examples" / "east_west.toml"}"]\n'
        'random_homes = 2\nseed = 1\ncontrollers = ["none", "rule", "oracle"]\n\n'
        '[[scenario]]\nname = "march days"\nprices = "sample:prices_2024.json.gz"\n'
        'weather = "sample:knmi_debilt_260_2024_T_Q.csv.gz"\nstart = "2024-03-04"\nend = "2024-03-07"\n')
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "dwars", "fleet-evaluate", str(fleet), "--out", str(out),
                          "--address", address], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "4 homes x 1 scenarios" in run.stdout
    meta = json.loads((out / "fleet.json").read_text())
    assert meta["ray"]["cpus"] == 2 and meta["ray"]["nodes"] == 1
    assert meta["ray"]["address"].endswith(address.split(":")[1])  # the cluster's, not a local instance
    rows = pd.read_csv(out / "fleet.csv")
    assert len(rows) == 4 * 3 and set(rows["home"]) == {"home", "east-west", "random-01", "random-02"}

