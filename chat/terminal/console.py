"""The terminal's own I/O: typed lines read from fd 0, lines written to stdout, and the
menu prompts.

In a room, on a real terminal, the client edits the input line itself (`LineEditor`, the
terminal in non-canonical mode without echo): a message that arrives while someone types is
written above the input line, which is then drawn again below it with what was typed so far,
and a sent line leaves the input line empty instead of staying on screen beside the server's
copy of it. Piped input keeps plain line reading.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import sys
import termios
import threading
from collections.abc import Iterator

from .http import pick

# -- line input ---------------------------------------------------------------------------

class LineSplitter:
    """Bytes as they come from a terminal or pipe -> complete text lines (UTF-8; bad
    bytes become U+FFFD). `finish` returns a last line that had no newline."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, chunk: bytes) -> list[str]:
        self._partial += self._decoder.decode(chunk)
        *lines, self._partial = self._partial.split("\n")
        return [line.rstrip("\r") for line in lines]

    def finish(self) -> list[str]:
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        return [rest] if rest else []


class _Stdin:
    """Lines from fd 0 with os.read: no Python buffer between the menus and the chat, and
    no lock held by a reader thread when the process exits."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self._split = LineSplitter()
        self._lines: list[str] = []
        self.eof = False

    def _fill(self) -> None:
        while not self._lines and not self.eof:
            try:
                chunk = os.read(self.fd, 4096)
            except InterruptedError:
                continue
            if chunk:
                self._lines.extend(self._split.feed(chunk))
            else:
                self.eof = True
                self._lines.extend(self._split.finish())

    def readline(self) -> str | None:
        """The next line (blocking), None at end of input."""
        self._fill()
        return self._lines.pop(0) if self._lines else None


class LineEditor:
    """Keystrokes -> finished lines, and the input line as it should look. Sans-IO.

    Enter finishes a line; Backspace, Ctrl-U (the whole line) and Ctrl-W (the last word)
    edit it; Ctrl-D on an empty line is end of input (None); escape sequences (arrows,
    function keys) and other control characters are ignored."""

    def __init__(self, prompt: str = "> ") -> None:
        self.prompt = prompt
        self.typed: list[str] = []
        self._escape = 0  # 1: after ESC, 2: inside a CSI/SS3 sequence

    def feed(self, text: str) -> list[str | None]:
        done: list[str | None] = []
        for char in text:
            if self._escape == 1:
                self._escape = 2 if char in "[O" else 0
            elif self._escape == 2:
                if "@" <= char <= "~":
                    self._escape = 0
            elif char == "\x1b":
                self._escape = 1
            elif char in "\r\n":
                done.append("".join(self.typed))
                self.typed = []
            elif char in "\x7f\x08":
                if self.typed:
                    self.typed.pop()
            elif char == "\x15":
                self.typed = []
            elif char == "\x17":
                text_now = "".join(self.typed).rstrip()
                self.typed = list(text_now[:text_now.rfind(" ") + 1])
            elif char == "\x04":
                if not self.typed:
                    done.append(None)
            elif char >= " ":
                self.typed.append(char)
        return done

    def line(self) -> str:
        return self.prompt + "".join(self.typed)


class _Quit(Exception):
    """End of input or a 'q' at a menu."""


class _Terminal:
    def __init__(self, stdin: _Stdin) -> None:
        self.stdin = stdin
        # While a room is open on a real terminal: the line being typed, and how many
        # columns of the screen's last line it takes (to blank it before writing above it).
        self._editor: LineEditor | None = None
        self._shown = 0
        self._lock = threading.Lock()  # the reader thread echoes while trio writes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._ready: list[str | None] = []

    def say(self, *lines: str) -> None:
        if not lines:
            return
        with self._lock:
            text = "".join(line + "\n" for line in lines)
            if self._editor is not None:
                text = self._blank() + text.replace("\n", "\r\n") + self._draw()
            sys.stdout.write(text)
            sys.stdout.flush()

    def _blank(self) -> str:
        """Carriage return, spaces over the input line, carriage return: works on any
        terminal, dumb ones too (no escape sequences)."""
        blank = "\r" + " " * self._shown + "\r" if self._shown else "\r"
        self._shown = 0
        return blank

    def _draw(self) -> str:
        assert self._editor is not None
        line = self._editor.line()
        self._shown = len(line)
        return line

    @contextlib.contextmanager
    def editing(self, prompt: str = "> ") -> Iterator[None]:
        """Edit the input line here while inside (only when stdin and stdout are a
        terminal): non-canonical mode without echo; signals (Ctrl-C) still work."""
        fd = self.stdin.fd
        if not (os.isatty(fd) and sys.stdout.isatty()):
            yield
            return
        saved = termios.tcgetattr(fd)
        changed = termios.tcgetattr(fd)
        changed[3] &= ~(termios.ICANON | termios.ECHO)
        changed[6][termios.VMIN] = 1
        changed[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, changed)
        with self._lock:
            self._editor = LineEditor(prompt)
            sys.stdout.write(self._draw())
            sys.stdout.flush()
        try:
            yield
        finally:
            with self._lock:
                sys.stdout.write(self._blank())
                sys.stdout.flush()
                self._editor = None
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    def read_line(self) -> str | None:
        """The next typed line (blocking; None at end of input), edited here when
        `editing` is on."""
        if self._editor is None:
            return self.stdin.readline()
        while not self._ready:
            try:
                chunk = os.read(self.stdin.fd, 4096)
            except InterruptedError:
                continue
            with self._lock:
                editor = self._editor
                if editor is None:
                    return self.stdin.readline()
                if not chunk:
                    self._ready.append(None)
                    break
                self._ready.extend(editor.feed(self._decoder.decode(chunk)))
                # Redraw the input line as typed so far; a finished line leaves it empty.
                sys.stdout.write(self._blank() + self._draw())
                sys.stdout.flush()
        return self._ready.pop(0)

    def ask(self, prompt: str) -> str:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = self.stdin.readline()
        if line is None:
            raise _Quit
        return line

    def choose(self, prompt: str, count: int) -> int:
        while True:
            answer = self.ask(f"{prompt} [1-{count}, q to quit]: ")
            if answer.strip().lower() in ("q", "/quit", "quit"):
                raise _Quit
            index = pick(answer, count)
            if index is not None:
                return index
            self.say(f"  please type a number from 1 to {count}")
