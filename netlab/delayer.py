"""A delaying TCP relay: the kernel here has no netem, so added delay on a link is this
process in the receiving host's namespace, with an nftables redirect sending the host's
incoming connections to it (netns.delay). Each chunk is passed on `--ms` after it arrived,
in order, both ways.

    ip netns exec netlab-bus python3 netlab/delayer.py --listen 10.77.0.2:16379 \\
        --to 10.77.0.2:6379 --ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from topology import check_in_tree


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                writer.write_eof() if writer.can_write_eof() else writer.close()
                return
            writer.write(chunk)
            await writer.drain()

    task = asyncio.create_task(forward())
    try:
        while True:
            chunk = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay, chunk))
            if not chunk:
                break
        await task
    except (ConnectionError, OSError):
        task.cancel()
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--ms", type=float, required=True)
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    to_host, to_port = args.to.rsplit(":", 1)
    check_in_tree(host)
    check_in_tree(to_host)
    delay = args.ms / 1000

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(to_host, int(to_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pump(reader, up_writer, delay), pump(up_reader, writer, delay),
                             return_exceptions=True)

    server = await asyncio.start_server(relay, host, int(port))
    print(f"delaying {args.listen} -> {args.to} by {args.ms:g} ms", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
