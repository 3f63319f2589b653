"""Shared by the benchmarks: run a real `classroom serve` process, percentiles, reports."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


@contextmanager
def server_process(db_url: str, *extra: str) -> Iterator[dict[str, str]]:
    """Start `classroom serve` on free ports; yields {"http": url, "chat": url, "pid": pid}
    (without the listener that `--no-http` / `--no-chat` in `extra` turns off, and with
    "metrics" when `extra` asks for `--metrics`)."""
    wanted = 2 - ("--no-http" in extra) - ("--no-chat" in extra) + ("--metrics" in extra)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "classroom.cli", "serve", "--http", "127.0.0.1:0",
         "--chat", "127.0.0.1:0", "--db", db_url,
         # The load generator is one address standing for many clients.
         "--http-per-address", "1000", "--chat-per-address", "10000", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    urls: dict[str, str] = {}
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while len(urls) < wanted and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.match(r"classroom: (HTTP|chat|metrics) on (\S+)", line):
            urls[m.group(1).lower()] = m.group(2)
    if len(urls) < wanted:
        proc.kill()
        raise RuntimeError("the server did not start")
    urls["pid"] = str(proc.pid)
    try:
        yield urls
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time a process and its live children (`serve --workers`) have
    used so far (Linux /proc)."""
    total = 0.0
    for one in [int(pid), *_descendants(int(pid))]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(k) for k in children.read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_descendants(kid)]
    return found


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def report(name: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """Print a table and write benchmarks/results/<name>.json."""
    widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(_fmt(row[c]).rjust(w) for c, w in zip(columns, widths, strict=True)))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps({"benchmark": name, "at": time.time(), "rows": list(rows)},
                              indent=2))
    print(f"(written to {out})")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return "-" if value is None else str(value)


def py_spy(pid: str, name: str, rate: int) -> subprocess.Popen[bytes]:
    """py-spy recording the server `pid` (`rate` samples a second) into
    benchmarks/results/profile_NAME.txt, until sent SIGINT (it then writes what it has)."""
    out = Path(__file__).parent / "results" / f"profile_{name}.txt"
    out.parent.mkdir(exist_ok=True)
    return subprocess.Popen(["py-spy", "record", "-p", pid, "-r", str(rate), "-f", "raw",
                             "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
