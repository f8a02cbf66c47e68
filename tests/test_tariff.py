"""Dutch tariff model: the formulas, the energy tax by year, the spread rule and the manual's example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dwars.config import ConfigError, TariffConfig
from dwars.env.tariff import (
    ENERGY_TAX_EUR_PER_KWH,
    Tariff,
    exports_for_trading,
    supplier_presets,
    trade_allowed,
)


def at(local: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([pd.Timestamp(local, tz="Europe/Amsterdam").tz_convert("UTC")])


def test_manual_worked_example_spread() -> None:
    tariff = Tariff(base_margin_eur_per_kwh=0.05, purchase_fee_eur_per_kwh=0.03, feed_in_fee_eur_per_kwh=0.0)
    spread = tariff.spread("gemiddeld")
    assert spread == pytest.approx(0.08)
    assert not trade_allowed(0.20, 0.26, spread)  # difference 0.06 < 0.08
    assert trade_allowed(0.20, 0.35, spread)  # difference 0.15 >= 0.08


def test_spread_boundary_is_inclusive() -> None:
    assert trade_allowed(0.20, 0.28, 0.08)
    assert not trade_allowed(0.20, 0.2799, 0.08)


def test_profiles_scale_the_spread_and_inkoop_only_never_exports() -> None:
    tariff = Tariff(base_margin_eur_per_kwh=0.05, purchase_fee_eur_per_kwh=0.03)
    assert tariff.spread("rustig") > tariff.spread("gemiddeld") > tariff.spread("maximaal") > 0
    assert exports_for_trading("maximaal") and not exports_for_trading("inkoop-only")
    with pytest.raises(ConfigError, match="strategy.profile = 'bold'"):
        tariff.spread("bold")


def test_solar_spread_is_the_profile_scaled_base_margin() -> None:
    # Refilling from own PV pays no purchase fee and earns the feed-in fee on both sides: only the margin remains.
    tariff = Tariff(base_margin_eur_per_kwh=0.05, purchase_fee_eur_per_kwh=0.03, feed_in_fee_eur_per_kwh=-0.01)
    assert tariff.spread("gemiddeld") == pytest.approx(0.09)
    assert tariff.solar_spread("gemiddeld") == pytest.approx(0.05)
    assert tariff.solar_spread("rustig") == pytest.approx(0.075)
    assert tariff.solar_spread("maximaal") == pytest.approx(0.025)
    with pytest.raises(ConfigError, match="strategy.profile = 'bold'"):
        tariff.solar_spread("bold")


def test_import_and_export_formulas() -> None:
    tariff = Tariff(purchase_fee_eur_per_kwh=0.02, feed_in_fee_eur_per_kwh=-0.01, vat_pct=21)
    t = at("2024-06-01 12:00")
    assert tariff.import_price([100.0], t)[0] == pytest.approx((0.100 + 0.02 + 0.10880) * 1.21)
    assert tariff.export_price([100.0], t)[0] == pytest.approx(0.100 - 0.01)
    with_vat = Tariff(feed_in_fee_eur_per_kwh=-0.01, vat_pct=21, export_vat=True)
    assert with_vat.export_price([100.0], t)[0] == pytest.approx((0.100 - 0.01) * 1.21)


def test_negative_prices_give_negative_export_and_cheap_import() -> None:
    tariff = Tariff(vat_pct=21)
    t = at("2024-06-01 13:00")
    assert tariff.export_price([-200.0], t)[0] < 0
    assert tariff.import_price([-200.0], t)[0] == pytest.approx((-0.2 + 0.02 + 0.10880) * 1.21)


def test_energy_tax_follows_the_local_calendar_year() -> None:
    tariff = Tariff()
    # 00:30 local on 1 January is still 23:30 UTC of the old year: the local year decides.
    times = pd.DatetimeIndex([pd.Timestamp("2024-12-31 23:30", tz="Europe/Amsterdam"),
                              pd.Timestamp("2025-01-01 00:30", tz="Europe/Amsterdam")]).tz_convert("UTC")
    assert list(tariff.energy_tax(times)) == [0.10880, 0.10154]
    for year, rate in {2023: 0.12599, 2024: 0.10880, 2025: 0.10154, 2026: 0.09160}.items():
        assert tariff.energy_tax(at(f"{year}-07-01 12:00"))[0] == rate
        assert ENERGY_TAX_EUR_PER_KWH[year] == rate


def test_energy_tax_outside_the_table_uses_nearest_year_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    assert Tariff().energy_tax(at("2031-01-05 12:00"))[0] == ENERGY_TAX_EUR_PER_KWH[max(ENERGY_TAX_EUR_PER_KWH)]
    assert "energy tax for 2031 is not known" in caplog.text


def test_explicit_energy_tax_and_vat_override_the_tables() -> None:
    tariff = Tariff(energy_tax_eur_per_kwh=0.0916, vat_pct=21)
    assert tariff.import_price([0.0], at("2022-09-01 12:00"))[0] == pytest.approx((0.02 + 0.0916) * 1.21)


def test_vat_was_nine_percent_in_the_second_half_of_2022() -> None:
    tariff = Tariff()
    assert tariff.vat_factor(at("2022-06-30 23:00"))[0] == pytest.approx(1.21)
    assert tariff.vat_factor(at("2022-07-01 00:00"))[0] == pytest.approx(1.09)
    assert tariff.vat_factor(at("2023-01-01 00:00"))[0] == pytest.approx(1.21)


def test_net_metering_credits_energy_tax_and_vat_on_export() -> None:
    t = at("2024-03-01 12:00")
    plain = Tariff(vat_pct=21, purchase_fee_eur_per_kwh=0.0)
    netted = Tariff(vat_pct=21, purchase_fee_eur_per_kwh=0.0, net_metering=True)
    assert netted.export_price([80.0], t)[0] == pytest.approx(netted.import_price([80.0], t)[0])
    assert netted.export_price([80.0], t)[0] > plain.export_price([80.0], t)[0]


def test_presets_are_data_with_sources_and_config_keys_override() -> None:
    presets = supplier_presets()
    assert len(presets) >= 5
    for key, preset in presets.items():
        assert {"name", "purchase_fee_eur_per_kwh", "feed_in_fee_eur_per_kwh", "checked", "source"} <= set(preset), key
        assert 0 <= preset["purchase_fee_eur_per_kwh"] < 0.1
    frank = Tariff.from_config(TariffConfig(supplier="frank-energie"))
    assert frank.purchase_fee_eur_per_kwh == presets["frank-energie"]["purchase_fee_eur_per_kwh"]
    assert frank.export_vat is True
    override = Tariff.from_config(TariffConfig(supplier="frank-energie", purchase_fee_eur_per_kwh=0.05))
    assert override.purchase_fee_eur_per_kwh == 0.05
    assert override.feed_in_fee_eur_per_kwh == presets["frank-energie"]["feed_in_fee_eur_per_kwh"]


def test_custom_uses_documented_defaults() -> None:
    tariff = Tariff.from_config(TariffConfig())
    assert (tariff.purchase_fee_eur_per_kwh, tariff.feed_in_fee_eur_per_kwh, tariff.export_vat) == (0.02, 0.0, False)
    assert tariff.spread() == pytest.approx(0.07)


@given(
    epex=st.floats(-500, 1000),
    fee=st.floats(0, 0.05),
    feed=st.floats(-0.05, 0.05),
)
def test_import_always_costs_more_than_export_earns(epex: float, fee: float, feed: float) -> None:
    # Without net metering and with a non-negative energy tax, buying a kWh costs at least what selling earns
    # whenever the purchase fee is at least the feed-in fee (the usual contract): no free arbitrage.
    tariff = Tariff(purchase_fee_eur_per_kwh=fee, feed_in_fee_eur_per_kwh=min(feed, fee), export_vat=True)
    t = at("2024-05-01 12:00")
    assert tariff.import_price([epex], t)[0] >= tariff.export_price([epex], t)[0] - 1e-12


def test_prices_vectorise_over_a_year() -> None:
    times = pd.date_range("2024-01-01", "2025-01-01", freq="15min", tz="UTC", inclusive="left")
    epex = np.linspace(-100, 300, len(times))
    imp = Tariff().import_price(epex, times)
    assert imp.shape == (len(times),) and np.all(np.diff(imp[:1000]) > 0)
