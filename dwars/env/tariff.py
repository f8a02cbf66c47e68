"""Dutch dynamic electricity tariff: what a kWh imported costs and a kWh exported earns, and the spread rule.

The one place where prices are turned into money; the simulator, the controllers, the shield and the
runtime all call it.

- import EUR/kWh = (EPEX + purchase_fee + energy_tax) x (1 + VAT)
- export EUR/kWh = (EPEX + feed_in_fee) x (1 + VAT if export_vat else 1)
- with net metering ("saldering", ends 2027-01-01): export also earns back energy tax and VAT,
  export EUR/kWh = (EPEX + feed_in_fee + energy_tax) x (1 + VAT). This equals the yearly netting as long
  as a home exports less than it imports over the year (most homes with a battery); kWh exported beyond
  the yearly import earn only the plain export price, which this per-interval model does not see.
- spread EUR/kWh = (base_margin + (purchase_fee - feed_in_fee)) x profile factor. A trade (buy now to
  use or sell later, or export now to buy back later) is worth it only when the price difference is at
  least the spread. Exporting now what own PV surplus refills later (surplus that would otherwise be
  exported) pays no purchase fee and earns the feed-in fee on both sides: its spread is the base margin alone
  (``solar_spread``).

EPEX prices come in EUR/MWh (as published) and are divided by 1000. Fees and the energy tax are per kWh
excluding VAT. The energy tax defaults to the statutory rate of the local calendar year of each interval.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import PROFILES, ConfigError, Profile, TariffConfig
from dwars.timegrid import LOCAL_TZ

log = logging.getLogger(__name__)

#: Energy tax on electricity, first bracket (0-10 000 kWh), EUR/kWh excluding VAT, by calendar year.
#: Source: Belastingdienst tables "Tabellen tarieven milieubelastingen". Until 2022 a second per-kWh levy,
#: the ODE (2021: 0.0300, 2022: 0.0305), was charged beside it; it merged into the energy tax in 2023, so
#: the figures here for 2021 and 2022 are energy tax + ODE (0.09428 + 0.0300, 0.03679 + 0.0305): what a
#: household paid per kWh. Years outside the table use the nearest year, with a warning.
ENERGY_TAX_EUR_PER_KWH: dict[int, float] = {
    2021: 0.12428,
    2022: 0.06729,
    2023: 0.12599,
    2024: 0.10880,
    2025: 0.10154,
    2026: 0.09160,
}

#: Dutch VAT on electricity, %, by period of local time: 21 % except 9 % from 2022-07-01 to 2022-12-31
#: (temporary cut for the energy crisis). Used when the config does not set ``tariff.vat_pct``.
VAT_PCT_DEFAULT = 21.0
VAT_PCT_PERIODS: tuple[tuple[str, str, float], ...] = (("2022-07-01", "2023-01-01", 9.0),)

#: Multiplier on the spread per strategy profile: ``rustig`` trades only on wide gaps, ``maximaal`` on
#: narrow ones. ``inkoop-only`` keeps the normal spread for grid charging but never exports for trading.
PROFILE_SPREAD_FACTOR: dict[str, float] = {
    "rustig": 1.5,
    "gemiddeld": 1.0,
    "maximaal": 0.5,
    "inkoop-only": 1.0,
}

#: Values used when neither the config nor the supplier preset gives a key.
DEFAULTS: dict[str, Any] = {
    "purchase_fee_eur_per_kwh": 0.02,
    "feed_in_fee_eur_per_kwh": 0.0,
    "export_vat": False,
    "base_margin_eur_per_kwh": 0.05,
    "net_metering": False,
}
_PRESET_KEYS = (*DEFAULTS, "energy_tax_eur_per_kwh", "vat_pct")


def supplier_presets() -> dict[str, dict[str, Any]]:
    """Supplier presets shipped with dwars (``dwars/env/suppliers.toml``), keyed by preset id."""
    text = (resources.files("dwars.env") / "suppliers.toml").read_text(encoding="utf-8")
    return dict(tomllib.loads(text).get("suppliers", {}))


def _energy_tax_table(years: np.ndarray) -> np.ndarray:
    known = np.array(sorted(ENERGY_TAX_EUR_PER_KWH))
    rates = np.array([ENERGY_TAX_EUR_PER_KWH[y] for y in known])
    clamped = np.clip(years, known[0], known[-1])
    outside = np.unique(years[years != clamped])
    for year in outside:
        log.warning(
            "energy tax for %d is not known to dwars; using %d (%.5f EUR/kWh). Set "
            "tariff.energy_tax_eur_per_kwh to override.", year, np.clip(year, known[0], known[-1]),
            ENERGY_TAX_EUR_PER_KWH[int(np.clip(year, known[0], known[-1]))],
        )
    return rates[np.searchsorted(known, clamped)]


@dataclass(frozen=True)
class Tariff:
    """A home's electricity tariff, resolved from the config and the supplier preset.

    Parameters
    ----------
    supplier : preset id (``custom`` = built-in defaults).
    vat_pct : fixed VAT in %; ``None`` = the Dutch rate of the date (21 %, 9 % in the second half of 2022).
    purchase_fee_eur_per_kwh : supplier surcharge per imported kWh, excl. VAT.
    feed_in_fee_eur_per_kwh : added to EPEX per exported kWh, excl. VAT; negative = feed-in cost.
    export_vat : export compensation is paid with VAT on top.
    base_margin_eur_per_kwh : base margin of the spread rule.
    net_metering : yearly netting of export against import (saldering, ends 2027-01-01).
    energy_tax_eur_per_kwh : fixed energy tax excl. VAT; ``None`` = statutory rate by calendar year.
    timezone : clock that decides which calendar year an interval falls in.
    """

    supplier: str = "custom"
    vat_pct: float | None = None
    purchase_fee_eur_per_kwh: float = 0.02
    feed_in_fee_eur_per_kwh: float = 0.0
    export_vat: bool = False
    base_margin_eur_per_kwh: float = 0.05
    net_metering: bool = False
    energy_tax_eur_per_kwh: float | None = None
    timezone: str = LOCAL_TZ

    @classmethod
    def from_config(cls, cfg: TariffConfig, timezone: str = LOCAL_TZ, source: str = "config") -> Tariff:
        """Merge config keys over the supplier preset over the defaults.

        Raises
        ------
        ConfigError
            for an unknown supplier, naming the presets that exist.
        """
        presets = supplier_presets()
        if cfg.supplier != "custom" and cfg.supplier not in presets:
            raise ConfigError(
                [f"tariff.supplier = {cfg.supplier!r}: unknown; choose custom or one of "
                 f"{', '.join(sorted(presets))}"], source)
        values: dict[str, Any] = dict(DEFAULTS)
        values["energy_tax_eur_per_kwh"] = None
        values["vat_pct"] = None
        preset = presets.get(cfg.supplier, {})
        values.update({k: v for k, v in preset.items() if k in _PRESET_KEYS})
        for key in _PRESET_KEYS:
            explicit = getattr(cfg, key)
            if explicit is not None:
                values[key] = explicit
        return cls(supplier=cfg.supplier, timezone=timezone, **values)

    def monthly_fee_eur(self) -> float:
        """The supplier's fixed fee, EUR per month excl. VAT, from its preset (``monthly_fee_eur`` in
        ``suppliers.toml``); 0 for ``custom`` and for a preset that does not state one."""
        return float(supplier_presets().get(self.supplier, {}).get("monthly_fee_eur", 0.0))

    def vat_factor(self, times: pd.DatetimeIndex) -> np.ndarray:
        """1 + VAT for each interval start (UTC)."""
        if self.vat_pct is not None:
            return np.full(len(times), 1.0 + self.vat_pct / 100.0)
        local = pd.DatetimeIndex(times).tz_convert(self.timezone)
        vat = np.full(len(times), VAT_PCT_DEFAULT)
        for start, end, pct in VAT_PCT_PERIODS:
            lo, hi = pd.Timestamp(start, tz=self.timezone), pd.Timestamp(end, tz=self.timezone)
            vat[(local >= lo) & (local < hi)] = pct
        return 1.0 + vat / 100.0

    def energy_tax(self, times: pd.DatetimeIndex) -> np.ndarray:
        """Energy tax in EUR/kWh excl. VAT for each interval start (UTC), by local calendar year."""
        if self.energy_tax_eur_per_kwh is not None:
            return np.full(len(times), self.energy_tax_eur_per_kwh)
        years = pd.DatetimeIndex(times).tz_convert(self.timezone).year.to_numpy()
        return _energy_tax_table(years)

    def import_price(self, epex_eur_per_mwh: np.ndarray | pd.Series, times: pd.DatetimeIndex) -> np.ndarray:
        """What one imported kWh costs, EUR/kWh incl. VAT, per interval."""
        epex = np.asarray(epex_eur_per_mwh, dtype=float) / 1000.0
        return (epex + self.purchase_fee_eur_per_kwh + self.energy_tax(times)) * self.vat_factor(times)

    def export_price(self, epex_eur_per_mwh: np.ndarray | pd.Series, times: pd.DatetimeIndex) -> np.ndarray:
        """What one exported kWh earns, EUR/kWh (negative: exporting costs money), per interval."""
        epex = np.asarray(epex_eur_per_mwh, dtype=float) / 1000.0
        if self.net_metering:
            return (epex + self.feed_in_fee_eur_per_kwh + self.energy_tax(times)) * self.vat_factor(times)
        vat = self.vat_factor(times) if self.export_vat else 1.0
        return (epex + self.feed_in_fee_eur_per_kwh) * vat

    def spread(self, profile: Profile | str = "gemiddeld") -> float:
        """Minimum price difference (EUR/kWh) that justifies a trade under ``profile``."""
        if profile not in PROFILE_SPREAD_FACTOR:
            raise ConfigError([f"strategy.profile = {profile!r}: must be one of {', '.join(PROFILES)}"])
        base = self.base_margin_eur_per_kwh + (self.purchase_fee_eur_per_kwh - self.feed_in_fee_eur_per_kwh)
        return base * PROFILE_SPREAD_FACTOR[profile]

    def solar_spread(self, profile: Profile | str = "gemiddeld") -> float:
        """Minimum difference (EUR/kWh) between exporting now and the export price of the own PV surplus that
        refills the battery later: the fees cancel, the profile-scaled base margin remains."""
        if profile not in PROFILE_SPREAD_FACTOR:
            raise ConfigError([f"strategy.profile = {profile!r}: must be one of {', '.join(PROFILES)}"])
        return self.base_margin_eur_per_kwh * PROFILE_SPREAD_FACTOR[profile]


def exports_for_trading(profile: Profile | str) -> bool:
    """Whether the profile may discharge to the grid for profit (``inkoop-only`` never does)."""
    return profile != "inkoop-only"


def trade_allowed(
    buy_eur_per_kwh: float | np.ndarray, sell_eur_per_kwh: float | np.ndarray, spread_eur_per_kwh: float
) -> bool | np.ndarray:
    """The spread rule: trading is allowed when ``sell - buy >= spread``.

    ``buy`` is the price of the cheap moment (charging, or buying back), ``sell`` of the dear moment
    (using or exporting). A tolerance of 1e-9 EUR/kWh absorbs float rounding of equal differences.
    """
    return np.asarray(sell_eur_per_kwh) - np.asarray(buy_eur_per_kwh) >= spread_eur_per_kwh - 1e-9
