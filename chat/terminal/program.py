"""The `classroom chat` program: log in, pick a class and one of its open rooms, then chat
in it until /quit, end of input or Ctrl-C."""

from __future__ import annotations

import getpass
import sys
from typing import Any

import trio

from .connection import _chat
from .console import _Quit, _Stdin, _Terminal
from .display import sanitize
from .http import (
    ApiError,
    _items,
    _normal_server,
    api_call,
    chat_url_for,
    class_lines,
    open_rooms,
    room_lines,
)
from .session import ChatSession


def run_terminal_client(server_url: str, username: str | None,
                        chat_url: str | None = None) -> int:
    """The `classroom chat` command; returns the exit code."""
    terminal = _Terminal(_Stdin())
    try:
        return _run(terminal, _normal_server(server_url), username, chat_url)
    except (_Quit, EOFError, KeyboardInterrupt):
        terminal.say("")
        return 0
    except BaseExceptionGroup as group:  # a Ctrl-C before the signal handler was set up
        if group.subgroup(KeyboardInterrupt) is None:
            raise
        terminal.say("")
        return 0
    except ApiError as exc:
        print(f"classroom chat: {exc.message}", file=sys.stderr, flush=True)
        return 1


def _run(terminal: _Terminal, server: str, username: str | None,
         chat_url: str | None) -> int:
    # The server first: nobody should type a password for a server that is not there.
    health = check_server(server)
    token = sign_in(terminal, server, username, "classroom chat")
    if token is None:
        return 1
    chat_url = chat_url or chat_url_for(server, health)

    classes = _items(api_call(server, "GET", "/classrooms", token=token), "classrooms")
    if not classes:
        terminal.say("You are not in any class yet: join one on the website first.")
        return 1
    while True:
        terminal.say("Your classes:", *class_lines(classes))
        chosen = classes[terminal.choose("Class", len(classes))]
        class_id = int(chosen["id"])
        missing: list[str] = []
        sessions = _room_list(server, f"/classrooms/{class_id}/sessions", token, missing)
        discussions = _room_list(server, f"/classrooms/{class_id}/discussions", token,
                                 missing)
        rooms = open_rooms(sessions, discussions)
        if rooms:
            break
        if len(missing) == 2:
            terminal.say("This server does not list rooms (" + ", ".join(missing) + ").")
            return 1
        terminal.say(f"No live session or discussion is open in "
                     f"{sanitize(str(chosen.get('name')))} right now.")
        if len(classes) == 1:
            return 1
    terminal.say(f"Rooms of {sanitize(str(chosen.get('name')))}:", *room_lines(rooms))
    room = rooms[terminal.choose("Room", len(rooms))]
    terminal.say(f"Connecting to {chat_url} …")
    session = ChatSession(int(room["id"]))
    code = trio.run(_chat, terminal, session, chat_url, token)
    return code


def sign_in(terminal: _Terminal, server: str, username: str | None, program: str
            ) -> str | None:
    """Ask for the username (unless given) and the password (masked), log in; the token, or
    None when the login failed (said on stderr)."""
    while not username:
        username = terminal.ask("Username: ").strip()
    password = getpass.getpass("Password: ")
    try:
        login = api_call(server, "POST", "/login",
                         body={"username": username, "password": password})
    except ApiError as exc:
        print(f"{program}: login failed: {exc.message}", file=sys.stderr, flush=True)
        return None
    del password
    user = login.get("user", {})
    terminal.say(f"Signed in as {sanitize(str(user.get('display_name', username)))}.")
    return str(login["token"])


def check_server(server: str) -> dict[str, Any] | None:
    """The app server's healthz answer; ApiError (said by the caller, exit 1) when nothing
    answers there. A server too old to have healthz counts as there (None)."""
    try:
        health = api_call(server, "GET", "/healthz")
    except ApiError as exc:
        if exc.status == 0:
            raise
        return None
    return health if isinstance(health, dict) else None


def find_chat_url(server: str) -> str:
    """The chat server's address, as the app server's healthz tells it."""
    try:
        health = api_call(server, "GET", "/healthz")
    except ApiError:
        health = None
    return chat_url_for(server, health if isinstance(health, dict) else None)


def _room_list(server: str, path: str, token: str, missing: list[str]) -> Any:
    """One room listing; an endpoint this server lacks (404) counts as no rooms."""
    try:
        return api_call(server, "GET", path, token=token)
    except ApiError as exc:
        if exc.status != 404:
            raise
        missing.append(f"GET /api/v1{path}: {exc.message}")
        return None
