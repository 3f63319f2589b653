"""Server-to-client WebSocket frames built once and sent to many (RFC 6455 section 5.2).

A server's frames are unmasked, so one text message is the same bytes for every receiver.
Building them here lets a room fan out one `bytes` to a thousand sockets instead of framing
the message a thousand times. Only unfragmented text frames without extensions: the chat
server never negotiates permessage-deflate.
"""

from __future__ import annotations

import struct
from typing import Final

_FIN_TEXT: Final = 0x81
_MAX_SHORT: Final = 125
_MAX_MEDIUM: Final = 0xFFFF


def text_frame(message: str) -> bytes:
    payload = message.encode("utf-8")
    size = len(payload)
    if size <= _MAX_SHORT:
        head = struct.pack("!BB", _FIN_TEXT, size)
    elif size <= _MAX_MEDIUM:
        head = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        head = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return head + payload
