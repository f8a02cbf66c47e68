"""SunSpec storage control (model 124): how a battery Decision becomes register values, and back.

Register layout (SunSpec Information Model Reference, model 124 "Basic Storage Controls", length 24; offsets
are from the first register after the model's ID and length):

======  =====================  ======  ==========================================================
offset  point                  type    use here
======  =====================  ======  ==========================================================
0       WChaMax                uint16  max charge power, W (x 10^WChaMax_SF)
3       StorCtl_Mod            bits    bit 0 CHARGE: InWRte applies; bit 1 DISCHARGE: OutWRte applies
5       MinRsvPct              uint16  reserve, % (x 10^MinRsvPct_SF)
6       ChaState               uint16  state of charge, % (x 10^ChaState_SF), read only
10      OutWRte                int16   discharge limit, % of WChaMax (x 10^InOutWRte_SF)
11      InWRte                 int16   charge limit, % of WChaMax (x 10^InOutWRte_SF)
13      InOutWRte_RvrtTms      uint16  s after which the inverter drops the limits (0 = never)
16      WChaMax_SF             sunssf
19      MinRsvPct_SF           sunssf
20      ChaState_SF            sunssf
23      InOutWRte_SF           sunssf
======  =====================  ======  ==========================================================

The limits form a window for the battery power (charge positive): ``-OutWRte <= P <= InWRte`` (in % of
WChaMax). A negative limit forces power the other way, as Fronius GEN24/Symo hybrid inverters document for
model 124. So the four modes are:

- MSC: StorCtl_Mod = 0, the inverter's own self-consumption;
- Hold: both limits 0, the window [0, 0];
- Import p: InWRte = p, OutWRte = -p, the window [p, p] (charging at p, from PV first, then the grid);
- Export p: OutWRte = p, InWRte = -p, the window [-p, -p].

InOutWRte_RvrtTms is always written: if dwars stops writing, the inverter falls back to its own self-consumption.

The grid voltage (read only, for ``[voltage] source = "inverter"``) is in the inverter model next to model 124:
101 (single phase), 102 (split phase) or 103 (three phase), length 50, integers with a scale factor; or their float
variants 111, 112, 113, length 60, IEEE 754 float32 without one (Fronius, for one, offers both). Offsets as above:

=====  ======  =========  =====================================================================
model  offset  point      type
=====  ======  =========  =====================================================================
10x    8       PhVphA     uint16, V x 10^V_SF (phase A to neutral; mandatory)
10x    9, 10   PhVphB, C  uint16 (mandatory in 103; optional in 101 and 102: 0xFFFF = not implemented)
10x    11      V_SF       sunssf
11x    14      PhVphA     float32, V (two registers, high word first)
11x    16, 18  PhVphB, C  float32 (NaN = not implemented)
=====  ======  =========  =====================================================================

Source: sunspec/models, ``json/model_101.json``, ``model_102.json``, ``model_103.json`` and ``model_111.json`` ..
``model_113.json`` (the SunSpec Information Model Reference as JSON: points A, AphA, AphB, AphC, A_SF, PPVphAB,
PPVphBC, PPVphCA, PhVphA, PhVphB, PhVphC, V_SF, W, ... in this order; in 111-113 each measurement is a float32 and
the scale factors are gone). The map ``maps/sunspec_124.toml`` reads these points; the simulated inverter serves them.

What is written for each mode lives in one place, the register map ``maps/sunspec_124.toml`` that
:class:`~dwars.runtime.driver.SunSpecDriver` drives; :func:`setpoint_for` is a view of it, and
:func:`decision_from` is its inverse (the simulated inverter's reading of the points).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from dwars.env.modes import Decision, Mode
from dwars.runtime.regmap import RegisterMap, load_map

SUNSPEC_BASE = 40000  # holding register of the "SunS" marker
SUNS_MARKER = (0x5375, 0x6E53)  # "SunS"
MODEL_COMMON, MODEL_STORAGE, MODEL_END = 1, 124, 0xFFFF
COMMON_LENGTH, STORAGE_LENGTH = 66, 24
#: Inverter models: integers with scale factors (101 single, 102 split, 103 three phase), and their float variants.
MODELS_INVERTER, MODELS_INVERTER_FLOAT = (101, 102, 103), (111, 112, 113)
INVERTER_LENGTH, INVERTER_FLOAT_LENGTH = 50, 60
#: Offsets of the voltage points (see the module text).
INVERTER_POINTS: dict[str, int] = {"PhVphA": 8, "PhVphB": 9, "PhVphC": 10, "V_SF": 11}
INVERTER_FLOAT_POINTS: dict[str, int] = {"PhVphA": 14, "PhVphB": 16, "PhVphC": 18}
NOT_IMPLEMENTED = 0xFFFF  # an unsigned point the device does not have

STORAGE_POINTS: dict[str, int] = {
    "WChaMax": 0, "WChaGra": 1, "WDisChaGra": 2, "StorCtl_Mod": 3, "VAChaMax": 4, "MinRsvPct": 5, "ChaState": 6,
    "StorAval": 7, "InBatV": 8, "ChaSt": 9, "OutWRte": 10, "InWRte": 11, "InOutWRte_WinTms": 12,
    "InOutWRte_RvrtTms": 13, "InOutWRte_RmpTms": 14, "ChaGriSet": 15, "WChaMax_SF": 16, "WChaDisChaGra_SF": 17,
    "VAChaMax_SF": 18, "MinRsvPct_SF": 19, "ChaState_SF": 20, "StorAval_SF": 21, "InBatV_SF": 22,
    "InOutWRte_SF": 23,
}
#: What dwars may write: offsets StorCtl_Mod .. InOutWRte_RvrtTms, nothing else.
WRITABLE = ("StorCtl_Mod", "OutWRte", "InWRte", "InOutWRte_RvrtTms")
CHARGE, DISCHARGE = 1, 2
#: Scale factor of the rates this module writes: 100.00 % = 10000.
RATE_SF = -2


def int16(value: int) -> int:
    """A register word (0..65535) as a signed 16-bit number."""
    return value - 0x10000 if value >= 0x8000 else value


def word(value: int) -> int:
    """A signed 16-bit number as a register word."""
    if not -0x8000 <= value <= 0x7FFF:
        raise ValueError(f"register value {value}: outside int16")
    return value & 0xFFFF


@dataclass(frozen=True)
class StorageSetpoint:
    """The writable points of model 124 (rates in % of WChaMax, unscaled)."""

    storctl_mod: int
    out_rate_pct: float
    in_rate_pct: float
    revert_s: int

    def registers(self) -> dict[str, int]:
        """Register words for :data:`WRITABLE` (rates scaled by 10^-RATE_SF)."""
        scale = 10 ** -RATE_SF
        return {"StorCtl_Mod": self.storctl_mod, "OutWRte": word(round(self.out_rate_pct * scale)),
                "InWRte": word(round(self.in_rate_pct * scale)), "InOutWRte_RvrtTms": self.revert_s}


@cache
def storage_map() -> RegisterMap:
    """The shipped model-124 map (``maps/sunspec_124.toml``)."""
    return load_map("sunspec_124")


def setpoint_for(decision: Decision, max_charge_w: float, revert_s: int) -> StorageSetpoint:
    """The model-124 setpoint that carries out ``decision``: the map's writes for its mode (see the module text).

    Raises
    ------
    ValueError
        (:class:`~dwars.runtime.regmap.CommandError`) for a power above WChaMax, a non-positive WChaMax or a
        revert time outside 1..65535 s.
    """
    values = storage_map().command(decision, revert_s, max_charge_w)
    return StorageSetpoint(int(values["StorCtl_Mod"]), values["OutWRte"], values["InWRte"],
                           int(values["InOutWRte_RvrtTms"]))


def decision_from(storctl_mod: int, out_rate_pct: float, in_rate_pct: float, max_charge_w: float) -> Decision:
    """What the inverter does with these points, as a Decision (the simulated inverter's reading of them).

    A window that forces power one way (both limits on one side of 0) is carried out at its edge nearest to 0;
    [0, 0] is Hold; any other window (a charge-only or discharge-only limit) as self-consumption, since the
    simulated inverter does not model partial limits.
    """
    if storctl_mod & (CHARGE | DISCHARGE) == 0:
        return Decision(Mode.MSC)
    high = in_rate_pct if storctl_mod & CHARGE else 100.0
    low = -out_rate_pct if storctl_mod & DISCHARGE else -100.0
    kw_per_pct = max_charge_w / 1000.0 / 100.0
    if low > 0:  # charging forced at least at `low`
        return Decision(Mode.IMPORT, low * kw_per_pct)
    if high < 0:  # discharging forced at least at -high
        return Decision(Mode.EXPORT, -high * kw_per_pct)
    if low == 0 and high == 0:
        return Decision(Mode.HOLD)
    return Decision(Mode.MSC)
