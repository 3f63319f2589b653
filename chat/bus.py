"""The message bus between servers: Redis pub/sub through coredis (built on anyio, so it
runs under trio).

One channel per deployment (`redis://HOST:PORT/N?channel=NAME`, default `classroom`): every
server publishes on it and every chat server subscribes to it, so filtering by room is a
dict lookup on the receiving side and no subscription ever races a room being loaded.
A message is JSON: `{"k": kind, "o": server name, "i": boot id, "t": publish time, "b": body}`.

Liveness: each bus publishes a heartbeat every `heartbeat` seconds. A subscription that hears
nothing (not even its own heartbeat) for `silence` seconds counts as lost, since a partition
does not always reset the TCP connection, and is opened again. While it is lost the listener
is told (`bus_down`, it reads the database meanwhile); on every (re)subscription it is told
(`bus_up`) and catches up from the database, so nothing published in between is missed.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Mapping
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
from coredis import Redis

from classroom.bus import DOWN, OFF, UP

from . import metrics

log = logging.getLogger("chat.bus")

HEARTBEAT: Final = 1.0
SILENCE: Final = 3.5
PUBLISH_TIMEOUT: Final = 2.0
CONNECT_TIMEOUT: Final = 2.0
# Announcements waiting to be published; past this they are dropped (the database has them).
MAX_QUEUED: Final = 10_000
MAX_RETRY_DELAY: Final = 2.0


@attrs.frozen
class BusAddress:
    host: str
    port: int
    db: int
    channel: str


def parse_bus_url(url: str) -> BusAddress:
    """`redis://HOST:PORT/N?channel=NAME` (port 6379, database 0 and channel `classroom` by
    default). Pub/sub ignores the database number: the channel is what separates
    deployments sharing one Redis."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"expected redis://HOST:PORT/N, got {url!r}")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise ValueError(f"the Redis database must be a number, got {db_text!r}")
    channel = parse_qs(parts.query).get("channel", ["classroom"])[0]
    return BusAddress(parts.hostname, parts.port or 6379, int(db_text), channel)


@attrs.frozen
class BusMessage:
    kind: str
    origin: str  # the publishing server's name
    boot: str  # its boot id: a restarted server with the same name is a new one
    sent: float  # time.time() when published
    body: dict[str, Any]


class BusListener(Protocol):
    async def bus_message(self, message: BusMessage) -> None: ...

    async def bus_up(self) -> None:
        """Subscribed (again): catch up from the database on what may have been missed."""

    def bus_down(self) -> None:
        """The subscription is lost: read the database until bus_up."""


class RedisBus:
    def __init__(self, url: str, *, name: str, heartbeat: float = HEARTBEAT,
                 silence: float = SILENCE) -> None:
        self.address = parse_bus_url(url)
        self.name = name
        self.boot = secrets.token_hex(6)
        # Set by a chat server before run(): an app server only publishes.
        self.listener: BusListener | None = None
        self._heartbeat = heartbeat
        self._silence = silence
        self._subscribed = False
        self._publishing = True
        self._send, self._queued = trio.open_memory_channel[str](MAX_QUEUED)
        self._dropping = False

    @property
    def state(self) -> str:
        if self.listener is not None:
            return UP if self._subscribed and self._publishing else DOWN
        return UP if self._publishing else DOWN

    def announce(self, kind: str, body: Mapping[str, Any]) -> None:
        if not self._publishing:
            metrics.BUS_DROPPED.inc()
            return
        message = json.dumps({"k": kind, "o": self.name, "i": self.boot, "t": time.time(),
                              "b": body}, ensure_ascii=False, separators=(",", ":"))
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            metrics.BUS_DROPPED.inc()
            if not self._dropping:
                log.warning("bus: %d announcements queued; dropping new ones", MAX_QUEUED)
                self._dropping = True

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Publish, heartbeat and (with a listener) subscribe until cancelled."""
        a = self.address
        log.info("bus: redis://%s:%s/%s channel %r", a.host, a.port, a.db, a.channel)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish_forever)
            nursery.start_soon(self._beat)
            if self.listener is not None:
                nursery.start_soon(self._subscribe_forever, self.listener)
            task_status.started()

    def _client(self) -> Redis[str]:
        a = self.address
        return Redis(host=a.host, port=a.port, db=a.db, decode_responses=True,
                     connect_timeout=CONNECT_TIMEOUT, stream_timeout=PUBLISH_TIMEOUT)

    async def _beat(self) -> None:
        while True:
            self.announce("hb", {"chat": self.listener is not None})
            await trio.sleep(self._heartbeat)

    async def _publish_forever(self) -> None:
        while True:
            await self._reachable()
            try:
                async with self._client() as redis:
                    await redis.ping()
                    if not self._publishing:
                        log.info("bus: publishing again")
                    self._publishing = True
                    self._update_gauge()
                    async for message in self._queued:
                        if self._dropping and not self._queued.statistics().current_buffer_used:
                            self._dropping = False
                        with trio.fail_after(PUBLISH_TIMEOUT):
                            await redis.publish(self.address.channel, message)
                        metrics.BUS_MESSAGES.labels("published").inc()
            except* Exception as lost:  # coredis, anyio, OS errors and timeouts
                if self._publishing:
                    log.warning("bus: cannot publish (%r); servers read the database until "
                                "it is back", _first_leaf(lost))
                self._publishing = False
                self._update_gauge()

    async def _reachable(self) -> None:
        """Wait until the bus accepts TCP connections. (coredis 6.9 leaves a connection
        that could not connect to the garbage collector, which warns: try cheaply first.)"""
        delay = 0.1
        while True:
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    stream = await trio.open_tcp_stream(self.address.host, self.address.port)
                await stream.aclose()
                return
            except (OSError, trio.TooSlowError):
                pass
            await trio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    async def _subscribe_forever(self, listener: BusListener) -> None:
        delay = 0.1
        while True:
            await self._reachable()
            reason = f"nothing heard for {self._silence} s"
            try:
                await self._subscribe(listener)
            except* Exception as lost:
                # coredis, anyio and OS errors: the bus is unreachable. (Caught as a group:
                # a cancelled subscription's cleanup in coredis can raise beside the
                # Cancelled, which must go on.)
                reason = repr(_first_leaf(lost))
            if self._subscribed:
                self._subscribed = False
                self._update_gauge()
                metrics.BUS_FALLBACKS.inc()
                log.warning("bus: subscription lost (%s); reading the database until it is "
                            "back", reason)
                listener.bus_down()
                delay = 0.1
            await trio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    async def _subscribe(self, listener: BusListener) -> None:
        """One subscription, until it fails (raises) or falls silent (returns)."""
        async with self._client() as redis, redis.pubsub(
                channels=[self.address.channel], retry_policy=None,
                ignore_subscribe_messages=True, max_idle_seconds=math.inf) as pubsub:
            self._subscribed = True
            self._update_gauge()
            log.info("bus: subscribed to %r", self.address.channel)
            await listener.bus_up()
            while True:
                with trio.move_on_after(self._silence):
                    raw = await pubsub.get_message()
                    if raw is not None and raw.get("type") == "message":
                        await self._received(listener, raw["data"])
                    continue
                return

    async def _received(self, listener: BusListener, raw: Any) -> None:
        try:
            decoded = json.loads(raw)
            message = BusMessage(kind=str(decoded["k"]), origin=str(decoded["o"]),
                                 boot=str(decoded["i"]), sent=float(decoded["t"]),
                                 body=dict(decoded["b"]))
        except (ValueError, KeyError, TypeError):
            log.warning("bus: ignored a malformed message %.200r", raw)
            return
        metrics.BUS_MESSAGES.labels("received").inc()
        metrics.BUS_LAG.observe(max(0.0, time.time() - message.sent))
        if message.origin == self.name and message.boot == self.boot:
            return  # our own: already delivered here
        await listener.bus_message(message)

    def _update_gauge(self) -> None:
        metrics.BUS_UP.set(1 if self.state == UP else 0)


def _first_leaf(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup) and group.exceptions:
        group = group.exceptions[0]
    return group


__all__ = ["DOWN", "OFF", "UP", "BusAddress", "BusListener", "BusMessage", "RedisBus",
           "parse_bus_url"]
