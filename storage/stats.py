"""What the database layer reports about itself: each statement's duration goes to the
observers start-up registers (the Prometheus metrics), and the MySQL pool tells how many of
its connections are in use. Kept free of any metrics library: storage imports only trio,
trio-mysql and attrs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

StatementObserver = Callable[[float], None]

_observers: list[StatementObserver] = []


def observe_statements(observer: StatementObserver) -> Callable[[], None]:
    """Call `observer(seconds)` after every statement this process runs, failed ones too.
    Returns the function that stops it."""
    _observers.append(observer)
    return lambda: _observers.remove(observer)


@contextmanager
def timed() -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        if _observers:
            elapsed = time.perf_counter() - started
            for observer in _observers:
                observer(elapsed)
