"""An :class:`~dwars.config.Installation` written back as an installation TOML file.

A fleet run writes every home it evaluated (the owner's configs and the homes drawn at random) into its output
folder, so that one result row can be re-run alone with ``dwars evaluate --config``. The file holds every key of
every section the home has, not only those that differ from today's defaults: it keeps meaning the same home when
a later dwars changes a default. ``[runtime]`` (how ``dwars run`` reaches an inverter) is written only when it is
not the default, since a simulation never reads it.

The contract is the round trip: ``load_config(path)`` of a written file equals the installation.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import tomlkit

from dwars.config import Installation, RuntimeConfig

# The sections in the order of the README's key table; [pv] is written separately (its arrays).
_SECTIONS = ("site", "battery", "goals", "tariff", "strategy", "load", "ev", "boiler", "voltage")


def _table(section: Any) -> tomlkit.items.Table:
    """The keys of one section dataclass. ``None`` means "switched off" (written ``false``) for a key whose default
    is a value (goals.endpoint_hour, goals.night_end_soc_pct), and "not set" (left out) for a key whose default is
    ``None`` (the tariff's preset keys, site.import_peak_kw): both read back as ``None``."""
    table = tomlkit.table()
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None:
            if f.default is not None:
                table[f.name] = False
            continue
        table[f.name] = value
    return table


def installation_toml(inst: Installation, comment: str = "") -> str:
    """The TOML text of ``inst`` (``comment``: lines put on top, e.g. where the home came from)."""
    doc = tomlkit.document()
    for line in comment.splitlines():
        doc.add(tomlkit.comment(line))
    doc["name"] = inst.name
    doc["site"] = _table(inst.site)
    if inst.pv is not None:
        pv = tomlkit.table()
        arrays = tomlkit.array()
        for array in inst.pv.arrays:
            item = tomlkit.inline_table()
            item.update(dataclasses.asdict(array))
            arrays.append(item)
        pv["arrays"] = arrays
        for f in dataclasses.fields(inst.pv):
            if f.name != "arrays":
                pv[f.name] = getattr(inst.pv, f.name)
        doc["pv"] = pv
    for name in _SECTIONS:
        section = getattr(inst, name)
        if section is not None:
            doc[name] = _table(section)
    if inst.runtime != RuntimeConfig():
        doc["runtime"] = _table(inst.runtime)
    return re.sub(r"\n{3,}", "\n\n", tomlkit.dumps(doc))  # tomlkit leaves two blank lines after some tables


def write_installation(inst: Installation, path: str | Path, comment: str = "") -> Path:
    """Write ``inst`` as an installation TOML file (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(installation_toml(inst, comment), encoding="utf-8")
    return path
