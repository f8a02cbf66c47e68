"""Small file helpers shared by the loaders: transparent gzip, and where the bundled samples live."""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

from dwars.errors import DataError


def read_text(path: str | Path) -> str:
    """Text of a file (``.gz`` decompressed), with a clear error when it is missing.

    Decoding is UTF-8 with a BOM allowed; KNMI's Latin-1 header bytes are tolerated.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot be read ({err})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def sample_path(name: str) -> Path:
    """Path of a real data slice bundled with dwars (see ``dwars/data/samples/PROVENANCE.md``).

    Raises
    ------
    DataError
        naming the sample and listing those that exist.
    """
    folder = resources.files("dwars.data") / "samples"
    path = Path(str(folder / name))
    if not path.exists():
        known = sorted(p.name for p in Path(str(folder)).iterdir() if not p.name.endswith(".md"))
        raise DataError(f"sample {name!r} not found; bundled samples: {', '.join(known)}")
    return path
