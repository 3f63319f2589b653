"""The chat server's Prometheus metrics (process-wide, in prometheus_client's default
registry; `/metrics` on either listener shows them with the rest)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS: Final = Gauge("classroom_ws_connections", "Open WebSocket connections")
ROOMS_LOADED: Final = Gauge("classroom_rooms_loaded", "Rooms this chat server hosts now")
EVENTS_STORED: Final = Counter("classroom_events_stored", "Live events this server stored")
EVENTS_DELIVERED: Final = Counter(
    "classroom_events_delivered", "Frames of stored events queued for this server's clients",
    ["source"])  # local: stored here; bus: announced by another server; database: read back
BUS_MESSAGES: Final = Counter("classroom_bus_messages", "Bus messages", ["direction"])
BUS_LAG: Final = Histogram(
    "classroom_bus_lag_seconds", "From publishing on one server to receiving on this one",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
BUS_UP: Final = Gauge("classroom_bus_up", "1 while the message bus is up (0 down or off)")
BUS_FALLBACKS: Final = Counter(
    "classroom_bus_fallbacks", "Times this server lost the bus and fell back to the database")
BUS_DROPPED: Final = Counter(
    "classroom_bus_dropped", "Announcements not published (bus down or queue full)")
GAP_FILLS: Final = Counter(
    "classroom_relay_gap_fills", "Times a seq gap was filled from the database")
