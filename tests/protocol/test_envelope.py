"""Envelope parsing: what reaches a handler is a dict of Unicode text."""

from __future__ import annotations

import pytest

from protocol.envelope import EnvelopeError, parse_envelope


def test_a_lone_surrogate_is_refused_with_the_ref() -> None:
    """JSON can spell a lone surrogate; no UTF-8 encoder takes it (a handler storing it
    failed as `internal`)."""
    for frame in ('{"event":"message","data":{"text":"\\udc80"},"ref":7}',
                  '{"event":"sharing/code_send","data":{"files":{"\\ud800.py":"x"}},"ref":7}'):
        with pytest.raises(EnvelopeError) as info:
            parse_envelope(frame)
        assert (info.value.code, info.value.ref) == ("bad_frame", 7)
        assert "surrogate" in info.value.message


def test_an_escaped_surrogate_pair_is_one_character() -> None:
    envelope = parse_envelope('{"event":"message","data":{"text":"\\ud83d\\ude00"},"ref":1}')
    assert envelope.data == {"text": "\U0001f600"}
