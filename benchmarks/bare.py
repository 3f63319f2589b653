"""The ceilings of our stack, as servers of their own (one process each):

- `h11`: trio + h11 answering every request with the same small body, keep-alive, nothing
  else (no routing, no database, no template). No HTTP server on trio/h11 can beat it.
- `ws`: trio-websocket; every `message` frame received is sent to every client that joined
  its sender's room (the sender too) with one `send_message` per client in a loop, and acked
  to its sender (with its `ref`); `room/join` gets a `room/join` answer. What a hub without
  storage, ordering or backpressure would do.

    python -m benchmarks.bare h11|ws      # prints "bare: listening on PORT"
"""

from __future__ import annotations

import re
import sys
from email.utils import formatdate
from functools import partial
from typing import Final

import h11
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

BODY: Final = b'{"status":"ok","posts":[]}' + b" " * 200  # marker for the load generator


async def _h11_client(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    return
                continue
            if isinstance(event, h11.Request):
                continue
            if isinstance(event, h11.EndOfMessage):
                headers = [("Content-Type", "application/json"),
                           ("Content-Length", str(len(BODY))),
                           ("Date", formatdate(usegmt=True)), ("Server", "bare")]
                out = conn.send(h11.Response(status_code=200, headers=headers)) or b""
                out += conn.send(h11.Data(data=BODY)) or b""
                out += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(out)
                if conn.our_state is not h11.DONE:
                    return
                conn.start_next_cycle()
                continue
            if isinstance(event, h11.ConnectionClosed):
                return
    except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        return


_ROOM_ID: Final = re.compile(r'"room_id":(\d+)')
_REF: Final = re.compile(r'"ref":(\d+)')


class _Rooms:
    def __init__(self) -> None:
        self.members: dict[str, set[WebSocketConnection]] = {}

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        members: set[WebSocketConnection] = set()
        try:
            while True:
                message = await ws.get_message()
                # The load generators send text frames only.
                text = message if isinstance(message, str) else message.decode()
                if text.startswith('{"event":"room/join"'):
                    room = m.group(1) if (m := _ROOM_ID.search(text)) else ""
                    members.discard(ws)
                    members = self.members.setdefault(room, set())
                    members.add(ws)
                    await ws.send_message('{"event":"room/join","data":{}}')
                elif text.startswith('{"event":"message"'):
                    data = text.split('"data":', 1)[1].split(',"ref"', 1)[0].rstrip("}")
                    out = '{"event":"message","data":' + data + "}"
                    for member in list(members):
                        try:
                            await member.send_message(out)
                        except ConnectionClosed:
                            members.discard(member)
                    ref = m.group(1) if (m := _REF.search(text)) else "0"
                    await ws.send_message('{"event":"ack","ref":' + ref + "}")
        except ConnectionClosed:
            pass
        finally:
            members.discard(ws)


async def main(kind: str) -> None:
    async with trio.open_nursery() as nursery:
        if kind == "h11":
            listeners = await nursery.start(partial(trio.serve_tcp, _h11_client, 0,
                                                    host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
        else:
            room = _Rooms()
            server = await nursery.start(partial(serve_websocket, room.handle, "127.0.0.1", 0,
                                                 ssl_context=None))
            port = server.port
        print(f"bare: listening on {port}", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
