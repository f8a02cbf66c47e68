"""Write the add-on's options into the home's config file, each through dwars' own validated writer.

Usage: apply_options.py CONFIG.toml '{"strategy.profile": "rustig", "battery.reserve_pct": 25, ...}'

A key is written only when the file says something else (so an unchanged start leaves the file alone); every
write is checked by the config validator and done atomically, the old file kept as ``home.toml.bak``, the same
way the Home Assistant entities change it. A refused value stops the add-on with the validator's message.
"""

from __future__ import annotations

import json
import sys

from dwars.config import load_config
from dwars.errors import DwarsError
from dwars.runtime.homeassistant import write_config_value


def main(argv: list[str]) -> int:
    path, changes = argv[1], json.loads(argv[2])
    try:
        inst = load_config(path)
        for dotted, value in changes.items():
            section, key = dotted.split(".")
            if getattr(getattr(inst, section), key) != value:
                inst = write_config_value(path, section, key, value)
                print(f"{path}: {dotted} = {value!r} (from the add-on options)")
    except DwarsError as err:
        print(f"{path}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
