"""The database link's far end: a TCP forwarder in the root namespace.

Listens only on the root end of the `netlab-db` veth (10.77.0.1:3306) and copies bytes to
and from MariaDB at 127.0.0.1:3306, nothing else. Exits by itself when the veth is gone
(the tree was torn down) or on SIGTERM/SIGINT.

    python3 netlab/forwarder.py --listen 10.77.0.1:3306 --to 127.0.0.1:3306 --iface netlab-db
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

log = logging.getLogger("netlab.forwarder")
CONNECT_TIMEOUT = 5.0
CHUNK = 65536


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


async def serve(listen: tuple[str, int], target: tuple[str, int], iface: str) -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        peer = writer.get_extra_info("peername")
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*target), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.warning("%s: cannot reach %s:%s: %s", peer, *target, exc)
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, *listen, reuse_address=True)
    log.info("forwarding %s:%s -> %s:%s", *listen, *target)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gone = Path("/sys/class/net") / iface
    async with server:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            if not gone.exists():
                log.info("%s is gone: the tree was torn down", iface)
                break
    log.info("stopped after %d connections", connections)


def address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=address, required=True)
    parser.add_argument("--to", type=address, default=("127.0.0.1", 3306))
    parser.add_argument("--iface", required=True, help="exit when this interface is gone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.listen, args.to, args.iface))


if __name__ == "__main__":
    main()
