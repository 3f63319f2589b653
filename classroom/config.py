"""Process configuration: command-line flags over environment variables over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

import attrs

from storage import database_for

DEFAULT_DB: Final = "sqlite:///classroom.db"
DEFAULT_HTTP: Final = "127.0.0.1:8000"
DEFAULT_CHAT: Final = "127.0.0.1:8001"

# Environment variables, each the twin of a `classroom serve` flag.
ENV_DB: Final = "CLASSROOM_DB"
ENV_HTTP: Final = "CLASSROOM_HTTP"
ENV_CHAT: Final = "CLASSROOM_CHAT"
ENV_CHAT_URL: Final = "CLASSROOM_CHAT_URL"
ENV_SITE_URL: Final = "CLASSROOM_SITE_URL"
ENV_SECURE_COOKIES: Final = "CLASSROOM_SECURE_COOKIES"
ENV_SERVER_NAME: Final = "CLASSROOM_SERVER_NAME"
ENV_HTTP_PER_ADDRESS: Final = "CLASSROOM_HTTP_PER_ADDRESS"
ENV_CHAT_PER_ADDRESS: Final = "CLASSROOM_CHAT_PER_ADDRESS"
ENV_CHAT_PER_USER: Final = "CLASSROOM_CHAT_PER_USER"
ENV_SIGNUPS_PER_ADDRESS: Final = "CLASSROOM_SIGNUPS_PER_ADDRESS"
ENV_BUS: Final = "CLASSROOM_BUS"
ENV_METRICS: Final = "CLASSROOM_METRICS"


def parse_address(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:8000`); port 0 picks a free port."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_cap(value: str) -> int:
    """A connection cap: a whole number >= 1."""
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"expected a whole number of connections >= 1, got {value!r}")
    return int(value)


def _check_db_url(config: object, attribute: object, url: str) -> None:
    database_for(url)  # raises ValueError with a message an operator can act on


def _check_bus_url(config: object, attribute: object, url: str | None) -> None:
    if url is not None and not url.startswith("redis://"):
        raise ValueError(f"--bus takes redis://HOST:PORT/N, got {url!r}")


@attrs.frozen
class Config:
    db_url: str = attrs.field(default=DEFAULT_DB, validator=_check_db_url)
    http: tuple[str, int] | None = parse_address(DEFAULT_HTTP)
    chat: tuple[str, int] | None = parse_address(DEFAULT_CHAT)
    # Where browsers reach the chat server (ws://host:port/ws); None: the chat listener itself.
    chat_url: str | None = None
    # The site's own origin (scheme://host:port) that WebSocket Origin headers must match;
    # None: the HTTP listener's own address (plus localhost/127.0.0.1 spellings of it).
    site_url: str | None = None
    secure_cookies: bool = False
    # Names this process in rooms.chat_server; default: the chat address.
    server_name: str | None = None
    # Connection caps per client address (HTTP, chat) and per user (chat); None: the
    # listener's default (protocol.HTTPLimits, chat.server). Behind a proxy every client has
    # the proxy's address: raise the per-address caps to the totals there.
    http_per_address: int | None = None
    chat_per_address: int | None = None
    chat_per_user: int | None = None
    # New accounts one client address may make per 15 minutes; None: accounts.py's default.
    signups_per_address: int | None = None
    # Listen with SO_REUSEPORT beside sibling processes (`serve --workers N` sets it).
    reuse_port: bool = False
    # The supervising process of a worker: the worker stops when it is gone.
    parent_pid: int | None = None
    # The message bus between servers (redis://HOST:PORT/N); None: no bus, chat servers
    # learn what others stored from the database.
    bus_url: str | None = attrs.field(default=None, validator=_check_bus_url)
    # A listener of its own for /metrics and /healthz (a chat-only server has no HTTP
    # listener; the HTTP listener serves both anyway).
    metrics: tuple[str, int] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: object) -> Config:
        values: dict[str, object] = {}
        if ENV_DB in env:
            values["db_url"] = env[ENV_DB]
        if ENV_HTTP in env:
            values["http"] = parse_address(env[ENV_HTTP])
        if ENV_CHAT in env:
            values["chat"] = parse_address(env[ENV_CHAT])
        if ENV_CHAT_URL in env:
            values["chat_url"] = env[ENV_CHAT_URL]
        if ENV_SITE_URL in env:
            values["site_url"] = env[ENV_SITE_URL].rstrip("/")
        if ENV_SECURE_COOKIES in env:
            values["secure_cookies"] = env[ENV_SECURE_COOKIES].lower() in {"1", "true", "yes"}
        if ENV_SERVER_NAME in env:
            values["server_name"] = env[ENV_SERVER_NAME]
        for key, name in (("http_per_address", ENV_HTTP_PER_ADDRESS),
                          ("chat_per_address", ENV_CHAT_PER_ADDRESS),
                          ("chat_per_user", ENV_CHAT_PER_USER),
                          ("signups_per_address", ENV_SIGNUPS_PER_ADDRESS)):
            if name in env:
                values[key] = parse_cap(env[name])
        if ENV_BUS in env:
            values["bus_url"] = env[ENV_BUS] or None
        if ENV_METRICS in env:
            values["metrics"] = parse_address(env[ENV_METRICS])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
