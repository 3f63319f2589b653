"""Token buckets: how many live events a user may send, and how long to wait when over.

Sans-IO: every call takes the current time (seconds, any monotonic clock), so tests drive it
with plain numbers. A bucket holds up to `burst` tokens and refills at `rate` per second; an
event takes one token, and with none left it is refused with the seconds until one is back.

The limits per role are here, beside the rules of who may send what: the instructor runs the
room (steps, feedback to each student, the lab) and gets more.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

import attrs

from .rules import Role

K = TypeVar("K", bound=Hashable)


@attrs.frozen
class Rate:
    burst: float
    per_second: float


# Live events per user per room. A person typing sends a few messages a minute; the lab's
# editor sends debounced code updates; the instructor marks a class's steps in quick bursts.
EVENT_RATES: Final = {
    Role.STUDENT: Rate(burst=20, per_second=5),
    Role.INSTRUCTOR: Rate(burst=60, per_second=20),
}
# Refused events a connection may still send (refilling one per second) before it is
# disconnected: a client that ignores `rate_limited` is hammering.
REFUSALS: Final = Rate(burst=30, per_second=1)


@attrs.define
class TokenBucket:
    rate: Rate
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: Rate, now: float) -> TokenBucket:
        return cls(rate, rate.burst, now)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.rate.burst, self.tokens + elapsed * self.rate.per_second)
        self.updated = max(self.updated, now)

    def take(self, now: float) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there is (nothing
        taken)."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate.per_second

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.rate.burst


class Buckets(Generic[K]):
    """A bucket per key, made full on first use. Full buckets are forgotten now and then
    (a full bucket and no bucket are the same), so memory follows the active keys."""

    SWEEP_EVERY: Final = 1000

    def __init__(self) -> None:
        self._buckets: dict[K, TokenBucket] = {}
        self._takes = 0

    def take(self, key: K, rate: Rate, now: float) -> float:
        """As TokenBucket.take, for `key`'s bucket (its rate is the one given first)."""
        self._takes += 1
        if self._takes % self.SWEEP_EVERY == 0:
            self._buckets = {k: b for k, b in self._buckets.items() if not b.is_full(now)}
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(rate, now)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


def retry_hint(seconds: float) -> float:
    """A wait to show a client: rounded up to the next tenth of a second."""
    return math.ceil(seconds * 10) / 10
