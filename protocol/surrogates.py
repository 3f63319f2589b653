"""JSON may spell a lone UTF-16 surrogate (`"\\udc80"`); Python decodes it into a `str` that
no UTF-8 encoder takes, so it would fail far from the input (the database driver, argon2)
as a 500. Both JSON entry points (HTTP bodies, WebSocket envelopes) refuse such values."""

from __future__ import annotations

import re
from typing import Any, Final

# The only way a surrogate reaches a decoded value: an escape of one (raw ones are not
# valid UTF-8, which both layers check first). A pair decodes to one character, not two.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def has_lone_surrogate(text: str, value: Any) -> bool:
    """Whether `value`, parsed from the JSON `text`, holds a string that is not Unicode."""
    if not _SURROGATE_ESCAPE.search(text):
        return False
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
