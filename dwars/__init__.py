"""dwars: local-first energy management for Dutch homes with solar panels, a home battery and a dynamic
(EPEX day-ahead) electricity contract."""

__version__ = "0.1.0"
