"""The terminal's own I/O: typed lines read from fd 0, lines written to stdout, and the
menu prompts."""

from __future__ import annotations

import codecs
import os
import sys

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
        self._fd = fd
        self._split = LineSplitter()
        self._lines: list[str] = []
        self.eof = False

    def _fill(self) -> None:
        while not self._lines and not self.eof:
            try:
                chunk = os.read(self._fd, 4096)
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


class _Quit(Exception):
    """End of input or a 'q' at a menu."""


class _Terminal:
    def __init__(self, stdin: _Stdin) -> None:
        self.stdin = stdin

    def say(self, *lines: str) -> None:
        if lines:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()

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
