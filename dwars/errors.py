"""Error types: every problem with a home's config or data is one of these, with a message that names the
field and the value so a home owner can fix it."""

from __future__ import annotations


class DwarsError(Exception):
    """Base class of all errors dwars raises on purpose."""


class DataError(DwarsError, ValueError):
    """Input data (prices, weather, load, scenario) is malformed, irregular or out of range."""


class MissingDataError(DataError):
    """Intervals are missing and no fill rule was given; the message lists where."""
