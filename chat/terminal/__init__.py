"""The terminal client: `classroom chat --server http://HOST:PORT [--user NAME] [--chat URL]`.

Log in through the JSON API (password read with `getpass`, never echoed), pick a class and
one of its open rooms, then read and send in that room over the live protocol until /quit,
end of input or Ctrl-C (exit 0). The connection comes back by itself (back-off with jitter,
0.5 s .. 10 s) and resumes with `room/rejoin` / `room/rehost` from the last seq seen, so
nothing is lost or printed twice.

Layout: everything that decides something is sans-IO and tested without sockets
(`parse_command`, `format_event`, `SeqTracker`, `Roster`, `Backoff`, `LineSplitter`,
`ChatSession`, `LineEditor`, the menu helpers); the rest is thin I/O: urllib for the few HTTP calls
(blocking, before trio starts), trio + trio-websocket for the chat, and a thread that reads
fd 0 for typed lines.

The client imports nothing of the server: it is a protocol peer like a browser.

Modules: `display` (text, the roster, event lines), `session` (the sans-IO `ChatSession`,
commands, seqs, back-off), `http` (the blocking API calls, chat-URL discovery, menus),
`console` (line input and output), `connection` (the trio chat loop) and `program`
(`run_terminal_client`, the program flow).
"""

from .connection import _closed_why as _closed_why  # re-exported for the tests
from .console import LineEditor, LineSplitter
from .display import Member, Roster, Viewer, format_event, sanitize
from .http import ApiError, chat_url_for, open_rooms, pick
from .program import run_terminal_client
from .session import Backoff, ChatSession, Command, SeqTracker, parse_command

__all__ = [
    "ApiError",
    "Backoff",
    "ChatSession",
    "Command",
    "LineEditor",
    "LineSplitter",
    "Member",
    "Roster",
    "SeqTracker",
    "Viewer",
    "chat_url_for",
    "format_event",
    "open_rooms",
    "parse_command",
    "pick",
    "run_terminal_client",
    "sanitize",
]
