"""Installation config: the examples load, and every kind of bad value gets a message naming file, key,
value and the allowed range."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dwars.config import ConfigError, Installation, installation_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.toml") if p.stem not in ("fleet", "sweep"))  # homes only


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "home.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_there_are_several_example_homes() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"home", "east_west", "large_battery"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_load(path: Path) -> None:
    inst = load_config(path)
    assert inst.battery.capacity_kwh > 0
    assert 0 <= inst.battery.reserve_pct <= 100


def test_home_example_values_match_the_contract() -> None:
    inst = load_config(ROOT / "examples" / "home.toml")
    assert inst.site.grid_limit_kw == 17.0
    assert inst.pv is not None and inst.pv.kwp == 5.0 and inst.pv.inverter_kw == 4.6
    assert inst.pv.arrays[0].azimuth_deg == 180 and inst.pv.arrays[0].tilt_deg == 35
    assert inst.battery.efficiency_one_way == pytest.approx(math.sqrt(0.90))
    assert inst.battery.reserve_kwh == pytest.approx(2.0)
    assert inst.goals.endpoint_hour == 17 and inst.goals.night_end_soc_pct == 30
    assert inst.strategy.profile == "gemiddeld"


def test_east_west_has_two_arrays() -> None:
    inst = load_config(ROOT / "examples" / "east_west.toml")
    assert inst.pv is not None
    assert sorted(a.azimuth_deg for a in inst.pv.arrays) == [90, 270]


def test_pv_may_be_omitted_and_goals_switched_off() -> None:
    inst = load_config(ROOT / "examples" / "measured_pv.toml")
    assert inst.pv is None
    assert inst.goals.endpoint_hour is None


def test_reserve_out_of_range_names_file_key_value_and_range(tmp_path: Path) -> None:
    path = write(tmp_path, "[battery]\nreserve_pct = 120\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: battery.reserve_pct = 120: must be 0..100"


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """
[site]
latitude = 95
timezone = "Mars/Olympus"
[battery]
capacity_kwh = -1
round_trip_efficiency = 1.5
[strategy]
profile = "wild"
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert len(problems) == 5
    text = str(info.value)
    assert "site.latitude = 95: must be -90..90" in text
    assert "site.timezone = 'Mars/Olympus'" in text
    assert "battery.capacity_kwh = -1: must be more than 0" in text
    assert "battery.round_trip_efficiency = 1.5" in text
    assert "strategy.profile = 'wild': must be one of rustig, gemiddeld, maximaal, inkoop-only" in text


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[battery]\ncapacity_kw = 10\n")
    with pytest.raises(ConfigError, match=r"battery.capacity_kw: unknown key; did you mean capacity_kwh\?"):
        load_config(path)


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batery: unknown key; did you mean battery"):
        load_config(write(tmp_path, "[batery]\ncapacity_kwh = 10\n"))


def test_wrong_types_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, '[battery]\ncapacity_kwh = "ten"\n[goals]\nendpoint_hour = 17.5\n[tariff]\nexport_vat = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "battery.capacity_kwh = 'ten': must be a number" in text
    assert "goals.endpoint_hour = 17.5: must be a whole number" in text
    assert "tariff.export_vat = 1: must be true or false" in text


def test_pv_needs_arrays_and_inverter(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[pv]\narrays = []\n"))
    text = str(info.value)
    assert "pv.arrays: must list at least one array" in text
    assert "pv.inverter_kw: missing" in text


def test_pv_array_values_are_checked_with_their_position(tmp_path: Path) -> None:
    path = write(tmp_path, "[pv]\ninverter_kw = 5\narrays = [{kwp = 3}, {kwp = 2, azimuth_deg = 400}]\n")
    with pytest.raises(ConfigError, match=r"pv.arrays\[1\].azimuth_deg = 400: must be 0..360"):
        load_config(path)


def test_cross_key_rules(tmp_path: Path) -> None:
    path = write(tmp_path, "[battery]\nreserve_pct = 40\ninitial_soc_pct = 30\n[goals]\nnight_end_soc_pct = 35\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "goals.night_end_soc_pct = 35: must be at least battery.reserve_pct (40)" in text
    assert "battery.initial_soc_pct = 30: must be at least battery.reserve_pct (40)" in text


def test_unknown_supplier_lists_presets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tariff.supplier = 'acme': unknown; choose custom or one of .*tibber"):
        load_config(write(tmp_path, '[tariff]\nsupplier = "acme"\n'))


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[battery\n"))


def test_non_finite_numbers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="battery.capacity_kwh = nan: must be a finite number"):
        load_config(write(tmp_path, "[battery]\ncapacity_kwh = nan\n"))


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "villa.toml"
    path.write_text("[battery]\ncapacity_kwh = 7\n", encoding="utf-8")
    assert load_config(path).name == "villa"


def test_replace_validates() -> None:
    inst = installation_from_dict({})
    assert isinstance(inst, Installation)
    from dwars.config import BatteryConfig

    with pytest.raises(ConfigError, match="initial_soc_pct"):
        inst.replace(battery=BatteryConfig(reserve_pct=60, initial_soc_pct=50))


def test_the_runtime_section_is_validated_key_by_key_and_as_a_whole() -> None:
    from dwars.config import installation_from_dict

    with pytest.raises(ConfigError) as err:
        installation_from_dict({"runtime": {"minutes": 30, "inverter": "sma", "inverter_port": 70000,
                                            "meter": "homewizard", "mqtt_port": "1883"}})
    text = str(err.value)
    assert "runtime.minutes = 30: must be one of 15, 60" in text
    assert "runtime.inverter = 'sma'" in text and "register map file" in text
    assert "runtime.inverter_port = 70000: must be 1..65535" in text
    assert "runtime.mqtt_port = '1883': must be a whole number" in text
    with pytest.raises(ConfigError, match="runtime.meter = 'homewizard': needs runtime.meter_host"):
        installation_from_dict({"runtime": {"meter": "homewizard"}})
    ok = installation_from_dict({"runtime": {"inverter": "maps/my_inverter.toml", "meter": "dsmr_tcp",
                                             "meter_host": "192.168.1.20", "minutes": 60}})
    assert ok.runtime.inverter.endswith(".toml") and ok.runtime.minutes == 60 and ok.runtime.meter_port == 2001
