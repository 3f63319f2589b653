"""This chat server's lease on the attendance of its connections.

Each open connection to a live session is counted in the database under the server that
holds it (storage: `open_connections`). A server renews its lease every LEASE / 3 seconds;
a server that died (kill -9, power cut) stops renewing, and its connections end as of its
last renewal, so nobody stays "online" and no minutes keep counting:
- by itself, when it starts again under the same name (before any join is recorded);
- by any other chat server, once the lease has run out.
"""

from __future__ import annotations

import logging

import trio

from classroom import Services
from classroom.errors import ClassroomError
from classroom.rooms import LEASE

log = logging.getLogger("chat.lease")


class Lease:
    def __init__(self, services: Services) -> None:
        self._services = services
        # Set once this server's own leftovers are cleared: joins wait for it, so a join
        # of the new run is never taken for one of the dead run.
        self.ready = trio.Event()

    async def start(self, server: str) -> None:
        """End what an earlier run of this server left open, then take the lease."""
        rooms = self._services.rooms
        try:
            ended = await rooms.end_connections_of(server)
            await rooms.hold_lease(server)
        except ClassroomError as exc:
            log.warning("connections of an earlier run of %s not ended: %s", server,
                        exc.message)
        else:
            if ended:
                log.info("ended %d attendance records left open by an earlier run of %s",
                         ended, server)
        finally:
            self.ready.set()

    async def keep(self, server: str, *, every: float = LEASE / 3) -> None:
        """Renew the lease, and end the connections of servers whose lease ran out."""
        rooms = self._services.rooms
        while True:
            await trio.sleep(every)
            try:
                await rooms.hold_lease(server)
                for dead in await rooms.lapsed_servers():
                    if dead != server:
                        ended = await rooms.end_connections_of(dead)
                        log.warning("chat server %s stopped renewing its lease: ended its"
                                    " %d attendance records", dead, ended)
            except ClassroomError as exc:
                log.warning("lease of %s not renewed: %s", server, exc.message)
