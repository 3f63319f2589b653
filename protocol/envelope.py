"""The live protocol's wire format: one JSON object per WebSocket text frame,
`{"event": "<name>", "data": {...}, "ref": <optional client number>, "id": <optional client
string>}` from clients (the `id` makes a resend recognizable), and
`{"event": ..., "seq": ..., "ref": ..., "data": ...}` from the server. Sans-IO: text in,
values out, and the other way round. Knows nothing of what the events mean."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from .surrogates import has_lone_surrogate

MAX_FRAME_BYTES: Final = 1024 * 1024
MAX_EVENT_NAME: Final = 64
# JavaScript's safe integer range: a ref must survive a round trip through a browser.
MAX_REF: Final = 2**53 - 1
_EVENT_NAME: Final = re.compile(r"[a-z][a-z_]*(/[a-z_]+)*")
# A client's own event id: unique per sender (a UUID, or a counter with a random prefix).
MAX_ID: Final = 64
_CLIENT_ID: Final = re.compile(r"[A-Za-z0-9._:-]+")


class EnvelopeError(Exception):
    """A frame that is not a valid envelope; answer with an `error` event, keep the
    connection. `ref` is the client's ref when it could be read."""

    def __init__(self, code: str, message: str, ref: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


@attrs.frozen
class Envelope:
    event: str
    data: Mapping[str, Any]
    ref: int | None = None
    id: str | None = None


_TOO_LARGE: Final = f"frames are limited to {MAX_FRAME_BYTES} bytes"


def _too_large(frame: str) -> bool:
    """Over the limit in UTF-8 bytes (a character is 1 to 4 of them)."""
    if len(frame) > MAX_FRAME_BYTES:
        return True
    return (len(frame) * 4 > MAX_FRAME_BYTES
            and len(frame.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES)


def _ref(raw: object) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= MAX_REF:
        return raw
    return None


def parse_envelope(frame: str | bytes) -> Envelope:
    """Raises EnvelopeError (code `bad_frame`, `too_large` or `bad_event`)."""
    if isinstance(frame, bytes):
        raise EnvelopeError("bad_frame", "send JSON in text frames, not binary ones")
    # The WebSocket layer already capped the frame at a few MiB; parsing it before the size
    # check lets an oversized frame be refused with its ref, so the client knows which.
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        if _too_large(frame):
            raise EnvelopeError("too_large", _TOO_LARGE) from exc
        raise EnvelopeError("bad_frame", f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EnvelopeError("too_large" if _too_large(frame) else "bad_frame",
                            _TOO_LARGE if _too_large(frame) else "a frame must be a JSON object")
    raw_ref = obj.get("ref")
    ref = _ref(raw_ref)
    if _too_large(frame):
        raise EnvelopeError("too_large", _TOO_LARGE, ref)
    if raw_ref is not None and ref is None:
        raise EnvelopeError("bad_frame", f"ref must be an integer from 0 to {MAX_REF}")
    if has_lone_surrogate(frame, obj):
        raise EnvelopeError("bad_frame", "a lone surrogate escape (\\udXXX) is not Unicode",
                            ref)
    event = obj.get("event")
    if not isinstance(event, str) or not event:
        raise EnvelopeError("bad_frame", "event (a string) is required", ref)
    if len(event) > MAX_EVENT_NAME or not _EVENT_NAME.fullmatch(event):
        raise EnvelopeError("bad_event", f"{event[:MAX_EVENT_NAME]!r} is not an event name", ref)
    data = obj.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EnvelopeError("bad_frame", "data must be a JSON object", ref)
    unknown = set(obj) - {"event", "data", "ref", "id"}
    if unknown:
        raise EnvelopeError("bad_frame", f"unknown keys: {', '.join(sorted(unknown))}", ref)
    client_id = obj.get("id")
    if client_id is not None and not (isinstance(client_id, str) and len(client_id) <= MAX_ID
                                      and _CLIENT_ID.fullmatch(client_id)):
        raise EnvelopeError("bad_frame", f"id must be 1 to {MAX_ID} characters of A-Z a-z 0-9"
                            " . _ : -", ref)
    return Envelope(event=event, data=data, ref=ref, id=client_id)


def encode_data(data: Mapping[str, Any]) -> str:
    """Compact JSON, UTF-8 kept as is (emoji stay emoji)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def encode_event(
    event: str, data_json: str, *, seq: int | None = None, ref: int | None = None
) -> str:
    """An outgoing frame around already-encoded data, so a stored event's data text is sent
    out byte for byte, live and in history, and encoded once however many receive it."""
    head = f'{{"event":{json.dumps(event)}'
    if seq is not None:
        head += f',"seq":{int(seq)}'
    if ref is not None:
        head += f',"ref":{int(ref)}'
    return f'{head},"data":{data_json}}}'
