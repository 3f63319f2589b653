"""Process start-up: open the database, start the HTTP and chat listeners in one nursery,
and shut down cleanly on SIGINT/SIGTERM.

Shutdown order: stop accepting on both listeners, tell WebSocket clients (close 1001), give
in-flight HTTP requests `shutdown_grace` seconds, then cancel what is left and exit 0. Work
that ignores cancellation (shielded cleanup, a loop that never yields) cannot hold the process
past HARD_STOP seconds after the signal: a watchdog thread then ends it with status 0.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import logging
import os
import resource
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import trio

from storage import StorageError, StorageUnavailable, open_storage

from . import metrics
from .config import Config
from .errors import ClassroomError
from .services import Services

if TYPE_CHECKING:
    from chat.bus import RedisBus

log = logging.getLogger("classroom")
T = TypeVar("T")
E = TypeVar("E", bound=BaseException)
SHUTDOWN_GRACE: Final = 5.0
HOUSEKEEPING_INTERVAL: Final = 3600.0
ORPHAN_CHECK_INTERVAL: Final = 1.0
# Seconds from the signal to the end of the process, whatever still runs: the grace, the
# cancellation of what is left, and a margin for shielded cleanup to finish.
HARD_STOP: Final = SHUTDOWN_GRACE + 1 + 4.0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _origins(host: str, port: int) -> set[str]:
    names = {_url_host(host)}
    if host in {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}:
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return {f"http://{name}:{port}" for name in names}


async def serve(config: Config, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run until SIGINT/SIGTERM (or cancellation). `task_status.started` gets a dict with the
    bound `http` and `chat` ports (None for a listener that is off)."""
    _allow_many_connections()
    _collect_less()
    try:
        async with open_storage(config.db_url) as storage:
            version = await storage.init_schema()
            log.info("database %s ready (schema version %s)", storage.backend, version)
            bus = _bus(config)
            services = Services.build(storage, bus=bus)
            metrics.watch(services)
            if config.signups_per_address is not None:
                services.accounts.max_signups_per_address = config.signups_per_address
            async with trio.open_nursery() as supervisor:
                async with trio.open_nursery() as listeners:
                    ports, stoppers = await _start_listeners(config, services, listeners,
                                                             bus)
                    if bus is not None:
                        # After the chat server, which listens to it, is set up.
                        await supervisor.start(bus.run)
                    supervisor.start_soon(_stop_on_signal, stoppers, listeners.cancel_scope)
                    supervisor.start_soon(_housekeeping, services)
                    supervisor.start_soon(_follow_changes, config, services)
                    if config.parent_pid is not None:
                        supervisor.start_soon(_stop_when_orphaned, config.parent_pid)
                    task_status.started(ports)
                # Every listener has returned: nothing left to supervise.
                supervisor.cancel_scope.cancel()
    except StorageUnavailable as exc:
        print(f"classroom: cannot open the database: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from exc
    except BaseExceptionGroup as group:  # (the listeners start inside the nurseries)
        cannot = _first(group, CannotListen)
        if cannot is None:
            raise
        print(f"classroom: {cannot}", file=sys.stderr, flush=True)
        raise SystemExit(2) from cannot


class CannotListen(Exception):
    """A listener's address could not be bound (in use, not this host's, not allowed)."""


def _first(exc: BaseException, kind: type[E]) -> E | None:
    """`exc` if it is of `kind`, else the first of `kind` in it as a group, however deep."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _first(inner, kind)) is not None:
                return found
    return None


async def _listening(start: Awaitable[T], what: str, option: str, host: str, port: int) -> T:
    """`start` (a listener's nursery.start), its bind failure told as CannotListen: a
    second `classroom serve` on the same ports gets one line, not a nested traceback."""
    try:
        return await start
    except BaseException as exc:
        if (failed := _first(exc, OSError)) is None:
            raise
        raise cannot_listen(failed, what, option, host, port) from exc


def cannot_listen(failed: OSError, what: str, option: str, host: str, port: int
                  ) -> CannotListen:
    """The operator's one line for a listener's bind (or address lookup) that failed."""
    hint = {errno.EADDRINUSE: "another program listens there",
            errno.EADDRNOTAVAIL: "not an address of this machine",
            errno.EACCES: "ports below 1024 need privileges"}.get(failed.errno or 0)
    if isinstance(failed, socket.gaierror):
        hint = "no such host"
    why = failed.strerror or str(failed)
    return CannotListen(f"cannot listen on {_url_host(host)}:{port} for {what}: {why}"
                        f"{f' ({hint})' if hint else ''}; choose with {option}")


def _bus(config: Config) -> RedisBus | None:
    """The message bus between servers, or None (the domain then uses NoBus)."""
    if config.bus_url is None:
        return None
    from chat.bus import RedisBus  # start-up code may import chat/

    name = config.server_name or f"{socket.gethostname()}:{os.getpid()}"
    return RedisBus(config.bus_url, name=name)


# The cyclic garbage collector's thresholds (CPython's defaults are 700, 10, 10). A chat
# server holds thousands of long-lived connection objects: at the defaults young collections
# ran every 700 allocations and full ones whenever the old objects had grown by a quarter, and
# a 5,000-member room's join storm and fan-out cost 15.7 s of the server's CPU in the
# collector (a full collection ~1 s of CPU, every client waiting); at these, 1.6 s in all,
# and no full collection. Nearly all garbage here is freed by reference counting anyway.
# The middle generation is collected after every 2 young collections, not 20: every object
# is scanned there once whichever it is (then it is old), but 20 young collections' survivors
# at once (a join storm's connections) were a 100-150 ms pause of every client, found nothing
# to free, and came every few seconds; the old generation's threshold counts middle
# collections, so it is 10x as many to keep full collections as rare as before.
GC_THRESHOLDS: Final = (10_000, 2, 1_000)


def _collect_less() -> None:
    # What start-up made (modules, classes, tables) lives as long as the process: frozen, it
    # is never scanned again.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _allow_many_connections() -> None:
    """Raise the open-files limit to its hard maximum: every client is a descriptor, and the
    usual soft limit (1024) would cap a lecture's live room below its size."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("open-files limit stays at %s: %s", soft, exc)


async def _start_listeners(config: Config, services: Services, nursery: trio.Nursery,
                           bus: RedisBus | None = None
                           ) -> tuple[dict[str, int | None], list[Callable[[], None]]]:
    # Start-up code is the one place allowed to import web/ and chat/; each only when its
    # listener runs, so an app-only server never loads the chat code and vice versa.
    ports: dict[str, int | None] = {"http": None, "chat": None}
    stoppers: list[Callable[[], None]] = []
    chat_server = None
    chat_url = config.chat_url
    if config.chat is not None:
        from chat import ChatServer
        from chat.server import MAX_CONNECTIONS_PER_ADDRESS, MAX_CONNECTIONS_PER_USER

        host, port = config.chat
        chat_server = ChatServer(
            services, server_name=config.server_name,
            max_per_address=config.chat_per_address or MAX_CONNECTIONS_PER_ADDRESS,
            max_per_user=config.chat_per_user or MAX_CONNECTIONS_PER_USER,
            bus=bus)
        ports["chat"] = await _listening(nursery.start(chat_server.serve, host, port),
                                         "the chat", "--chat HOST:PORT", host, port)
        chat_url = chat_url or f"ws://{_url_host(host)}:{ports['chat']}/ws"
        stoppers.append(chat_server.begin_shutdown)
        print(f"classroom: chat on {chat_url}", flush=True)
    if config.http is not None:
        from protocol import HTTPLimits, HTTPServer
        from web import Site

        host, port = config.http
        site = Site(services, chat_url=chat_url, secure_cookies=config.secure_cookies)
        limits = HTTPLimits()
        if config.http_per_address is not None:
            limits = attrs.evolve(limits, max_connections_per_address=config.http_per_address)
        http_server = HTTPServer(site.handler, error_page=site.error_page, limits=limits)
        ports["http"] = await _listening(nursery.start(
            functools.partial(http_server.serve, host, port, reuse_port=config.reuse_port)),
            "HTTP", "--http HOST:PORT", host, port)
        stoppers.append(http_server.begin_shutdown)
        print(f"classroom: HTTP on http://{_url_host(host)}:{ports['http']}/", flush=True)
    if config.metrics is not None:
        from protocol import HTTPServer

        host, port = config.metrics
        metrics_server = HTTPServer(_operator_handler(services))
        # Under `--workers` every worker shares the port: a scrape sees one worker.
        ports["metrics"] = await _listening(nursery.start(functools.partial(
            metrics_server.serve, host, port, reuse_port=config.reuse_port)),
            "metrics", "--metrics HOST:PORT", host, port)
        stoppers.append(metrics_server.begin_shutdown)
        print(f"classroom: metrics on http://{_url_host(host)}:{ports['metrics']}/metrics",
              flush=True)
    if chat_server is not None:
        if config.site_url:
            chat_server.allowed_origins.add(config.site_url)
        elif config.http is not None:
            chat_server.allowed_origins.update(_origins(config.http[0], ports["http"] or 0))
    return ports, stoppers


async def _follow_changes(config: Config, services: Services) -> None:
    """The cache's change-log reader. On MySQL it has a connection of its own: queued behind
    requests for a pooled one, a poll would come late, the cache would stop serving, and every
    request would then queue at the database (SQLite serves both from its one file)."""
    if services.storage.backend != "mysql":
        await services.cache.follow()
        return
    while True:
        try:
            async with open_storage(config.db_url, pool_size=1) as reader:
                await services.cache.follow(log_reader=reader)
        except StorageError as exc:  # only opening fails here; `follow` handles the rest
            log.warning("cache off until the database answers: %s", exc)
            await trio.sleep(1.0)


async def _stop_when_orphaned(parent_pid: int) -> None:
    """A worker of `serve --workers` whose supervisor died (even by SIGKILL) shuts down as
    if told to: nobody else would ever stop it."""
    while True:
        await trio.sleep(ORPHAN_CHECK_INTERVAL)
        if os.getppid() != parent_pid:
            break
    log.warning("supervisor %d is gone: shutting down", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def _operator_handler(services: Services) -> Any:
    """/metrics (Prometheus text) and /healthz (JSON) for the operator's listener."""
    from protocol import HTTPError, Request, Response, Router

    router = Router()

    async def show_metrics(request: Request) -> Response:
        return Response(200, (("Content-Type", metrics.CONTENT_TYPE),), metrics.render())

    async def healthz(request: Request) -> Response:
        try:
            database = await services.health()
        except ClassroomError as exc:
            raise HTTPError(503, exc.message) from exc
        return Response.json({"status": "ok", "database": database, "bus": services.bus.state})

    router.add("GET", "/metrics", show_metrics)
    router.add("GET", "/healthz", healthz)
    return router


async def _housekeeping(services: Services) -> None:
    """Forget expired sign-ins and old login failures, now and every hour: both tables only
    grow otherwise. Any number of processes may do this at once; the deletes are idempotent."""
    while True:
        try:
            await services.accounts.forget_expired()
        except ClassroomError as exc:
            log.warning("housekeeping skipped: %s", exc.message)
        await trio.sleep(HOUSEKEEPING_INTERVAL)


async def _stop_on_signal(stoppers: list[Callable[[], None]],
                          listeners: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("signal %s: shutting down", signal.Signals(signum).name)
            break
    _start_watchdog(HARD_STOP)
    _say("classroom: shutting down")
    for stop in stoppers:
        stop()
    # Listeners finish in-flight work within their own grace; past it, cancel what is left.
    await trio.sleep(SHUTDOWN_GRACE + 1)
    listeners.cancel()


def _say(line: str) -> None:
    """A line on stdout, which may be a pipe nobody reads any more (a crashed parent): its
    failure must not turn a clean shutdown into a crash."""
    with contextlib.suppress(OSError):
        print(line, flush=True)


def _start_watchdog(seconds: float) -> None:
    """End the process `seconds` from now unless it has ended by then. A thread, not a trio
    task: neither a shield nor a stalled event loop can hold it back."""

    def stop_now() -> None:
        log.error("shutdown still not finished after %.0f s: exiting anyway", seconds)
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(seconds, stop_now)
    timer.daemon = True  # a process that ended in time does not wait for it
    timer.start()


async def init_db(config: Config) -> int:
    async with open_storage(config.db_url) as storage:
        return await storage.init_schema()
