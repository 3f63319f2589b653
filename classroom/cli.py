"""The `classroom` command: serve, init-db, chat, share."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Final

import attrs
import trio

from storage import SCHEMA_VERSION, StorageError

from .config import DEFAULT_CHAT, DEFAULT_DB, DEFAULT_HTTP, Config, parse_address, parse_cap


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classroom", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP and chat servers")
    serve.add_argument("--http", metavar="HOST:PORT",
                       help=f"HTTP listener (default {DEFAULT_HTTP}; env CLASSROOM_HTTP)")
    serve.add_argument("--chat", metavar="HOST:PORT",
                       help=f"WebSocket listener (default {DEFAULT_CHAT}; env CLASSROOM_CHAT)")
    serve.add_argument("--no-http", action="store_true", help="chat server only")
    serve.add_argument("--no-chat", action="store_true", help="app server only")
    serve.add_argument("--chat-url", metavar="URL",
                       help="where browsers reach the chat server, e.g. ws://chat.example:8001/ws"
                            " (env CLASSROOM_CHAT_URL)")
    serve.add_argument("--site-url", metavar="URL",
                       help="the site's origin WebSocket clients must come from"
                            " (env CLASSROOM_SITE_URL)")
    serve.add_argument("--secure-cookies", action="store_true", default=None,
                       help="mark cookies Secure (behind https; env CLASSROOM_SECURE_COOKIES)")
    serve.add_argument("--server-name", help="this chat server's name in the database")
    serve.add_argument("--http-per-address", metavar="N", type=parse_cap,
                       help="HTTP connections one client address may hold (default 256 of "
                            "1000; env CLASSROOM_HTTP_PER_ADDRESS)")
    serve.add_argument("--chat-per-address", metavar="N", type=parse_cap,
                       help="WebSocket connections one client address may hold (default 256"
                            " of 10000; env CLASSROOM_CHAT_PER_ADDRESS)")
    serve.add_argument("--chat-per-user", metavar="N", type=parse_cap,
                       help="WebSocket connections one user may hold (default 16; env "
                            "CLASSROOM_CHAT_PER_USER)")
    serve.add_argument("--signups-per-address", metavar="N", type=parse_cap,
                       help="new accounts one client address may make per 15 minutes "
                            "(default 40; env CLASSROOM_SIGNUPS_PER_ADDRESS)")
    serve.add_argument("--bus", metavar="URL",
                       help="message bus between servers, redis://HOST:PORT/N[?channel=NAME]"
                            " (env CLASSROOM_BUS; default: none)")
    serve.add_argument("--metrics", metavar="HOST:PORT",
                       help="a listener of its own for /metrics and /healthz, e.g. for a"
                            " chat-only server (env CLASSROOM_METRICS)")
    _db_option(serve)
    serve.add_argument("--workers", metavar="N", type=parse_cap, default=1,
                       help="HTTP worker processes sharing the HTTP port (SO_REUSEPORT); the"
                            " first also serves the chat (default 1: this process serves)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    serve.add_argument("-q", "--quiet", action="store_true",
                       help="no access log (the INFO line per HTTP request and per WebSocket"
                            " connection)")

    init = commands.add_parser("init-db", help="create or upgrade the schema (idempotent)")
    _db_option(init)

    chat = commands.add_parser("chat", help="terminal client for live sessions")
    chat.add_argument("--server", default=f"http://{DEFAULT_HTTP}",
                      help="the app server's URL (default http://127.0.0.1:8000)")
    chat.add_argument("--user", help="username (asked when missing)")
    chat.add_argument("--chat", metavar="URL", dest="chat_url",
                      help="the chat server's WebSocket URL, e.g. ws://host:8001/ws"
                           " (default: what the server's /api/v1/healthz says, else"
                           " the server's host on port 8001)")
    share = commands.add_parser("share", help="share a directory live with the instructor")
    share.add_argument("directory", metavar="DIR", help="the folder to share")
    share.add_argument("--server", default=f"http://{DEFAULT_HTTP}",
                       help="the app server's URL (default http://127.0.0.1:8000)")
    share.add_argument("--room", type=int, metavar="N",
                       help="the live session's id (default: the open one of your classes)")
    share.add_argument("--user", help="username (asked when missing)")
    share.add_argument("--chat", metavar="URL", dest="chat_url",
                       help="the chat server's WebSocket URL (default: as for chat)")
    return parser


def _version() -> str:
    """The installed package's version and the schema it writes (what an upgrade moves)."""
    try:
        installed = importlib.metadata.version("classroom")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        installed = "(not installed)"
    return f"classroom {installed}, database schema {SCHEMA_VERSION}"


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL",
                        help=f"sqlite:///FILE or mysql://user:pass@host:port/db"
                             f" (default {DEFAULT_DB}; env CLASSROOM_DB)")


# One INFO line per HTTP request (web/site.py) and per WebSocket connection (chat/server.py).
ACCESS_LOGGERS: Final = ("web.access", "chat.access")
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormatter(logging.Formatter):
    """logging's own format, with the date and time of `asctime` made once per second:
    strftime for every line was most of what an access-log line cost (one per request)."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        msec_format = self.default_msec_format
        return self._text if msec_format is None else msec_format % (self._text, record.msecs)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter(LOG_FORMAT))
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        handlers=[handler],
    )
    if getattr(args, "quiet", False):
        # By name: the access loggers live in web/ and chat/, which this module may not import.
        for name in ACCESS_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.command == "chat":
        from chat.terminal import run_terminal_client  # start-up code may import chat/

        return int(run_terminal_client(args.server, args.user, args.chat_url))
    if args.command == "share":
        from chat.terminal.share import run_share  # start-up code may import chat/

        return run_share(args.directory, args.server, args.room, args.user, args.chat_url)
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"classroom: {exc}", file=sys.stderr)
        return 2
    from . import startup

    if args.command == "init-db":
        try:
            version = trio.run(startup.init_db, config)
        except StorageError as exc:
            print(f"classroom: cannot set up the database: {exc}", file=sys.stderr)
            return 2
        print(f"classroom: schema version {version} ready in {config.db_url.split('@')[-1]}")
        return 0
    if args.workers > 1:
        from .workers import supervise

        given = list(sys.argv[1:] if argv is None else argv)
        return trio.run(supervise, config, given, args.workers)
    trio.run(startup.serve, config)
    return 0


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, object] = {"db_url": args.db}
    if args.command == "serve":
        overrides.update(
            http=None if args.http is None else parse_address(args.http),
            chat=None if args.chat is None else parse_address(args.chat),
            chat_url=args.chat_url, site_url=args.site_url,
            secure_cookies=args.secure_cookies, server_name=args.server_name,
            http_per_address=args.http_per_address, chat_per_address=args.chat_per_address,
            chat_per_user=args.chat_per_user, reuse_port=args.reuse_port,
            signups_per_address=args.signups_per_address,
            parent_pid=args.parent_pid,
            bus_url=args.bus,
            metrics=None if args.metrics is None else parse_address(args.metrics),
        )
    config = Config.from_env(os.environ, **overrides)
    if args.command == "serve":
        if args.no_http and args.no_chat:
            raise ValueError("--no-http and --no-chat together leave nothing to run")
        if args.no_http:
            config = attrs.evolve(config, http=None)
        if args.no_chat:
            config = attrs.evolve(config, chat=None)
    return config


if __name__ == "__main__":
    raise SystemExit(main())
