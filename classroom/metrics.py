"""The process's Prometheus metrics that are not the chat server's own (chat/metrics.py):
the database (statement count and latency, pool use), HTTP requests by status and latency,
and the bus state; `render()` is what `/metrics` answers on either listener.

Every metric lives in prometheus_client's default registry, one per process.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from storage import Storage
from storage.stats import observe_statements

from .services import Services

_LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                           1.0, 2.5, 5.0)
DB_STATEMENTS: Final = Histogram("classroom_db_statement_seconds",
                                 "Database statements (count and duration)",
                                 buckets=_LATENCY_BUCKETS)
DB_POOL: Final = Gauge("classroom_db_pool_connections", "MySQL pool connections",
                       ["state"])  # in_use, max
HTTP_REQUESTS: Final = Counter("classroom_http_requests", "HTTP requests answered",
                               ["status"])
HTTP_SECONDS: Final = Histogram("classroom_http_request_seconds",
                                "HTTP request handling time", buckets=_LATENCY_BUCKETS)
BUS_STATE: Final = Gauge("classroom_bus_state", "The message bus: 1 in the current state",
                         ["state"])
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST


def watch(services: Services) -> None:
    """Report this process's database and bus through the metrics."""
    _watch_storage(services.storage)
    bus = services.bus
    for state in ("off", "up", "down"):
        BUS_STATE.labels(state).set_function(
            lambda state=state: 1.0 if bus.state == state else 0.0)  # type: ignore[misc]


def _watch_storage(storage: Storage) -> None:
    observe_statements(DB_STATEMENTS.observe)
    if storage.pool_use() is not None:
        DB_POOL.labels("in_use").set_function(lambda: (storage.pool_use() or (0, 0))[0])
        DB_POOL.labels("max").set_function(lambda: (storage.pool_use() or (0, 0))[1])


def render() -> bytes:
    return generate_latest()
