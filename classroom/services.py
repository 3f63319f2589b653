"""The domain as one value handed to `web/` and `chat/` at start-up."""

from __future__ import annotations

import attrs

from storage import Storage

from .accounts import Accounts
from .bus import Bus, NoBus
from .cache import Cache
from .classes import Classes
from .clock import Clock, utcnow
from .errors import translate_storage_errors
from .lab import Lab
from .posts import Posts
from .replays import Replays
from .rooms import Rooms


@attrs.frozen
class Services:
    storage: Storage
    accounts: Accounts
    classes: Classes
    posts: Posts
    rooms: Rooms
    lab: Lab
    replays: Replays
    clock: Clock
    # Serves only while `cache.follow()` runs (start-up starts it); see cache.py.
    cache: Cache
    # The message bus between servers (NoBus: none).
    bus: Bus

    @classmethod
    def build(cls, storage: Storage, *, clock: Clock = utcnow, bus: Bus | None = None
              ) -> Services:
        bus = bus or NoBus()
        cache = Cache(storage)
        classes = Classes(storage, cache, clock=clock)
        rooms = Rooms(storage, classes, cache, clock=clock, bus=bus)
        return cls(
            storage=storage,
            accounts=Accounts(storage, cache, clock=clock, bus=bus),
            classes=classes,
            posts=Posts(storage, classes, cache, clock=clock),
            rooms=rooms,
            lab=Lab(storage, rooms),
            replays=Replays(storage, clock=clock),
            clock=clock,
            cache=cache,
            bus=bus,
        )

    @translate_storage_errors
    async def health(self) -> str:
        """The database backend's name ("sqlite", "mysql") when it answers a query;
        Unavailable when it does not."""
        await self.storage.ping()
        return self.storage.backend
