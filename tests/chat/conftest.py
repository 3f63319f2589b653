"""Fixtures of the chat tests (their helpers are in harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.chat.harness import ChatWorld, chat_servers

# The two-server fixture's relay interval: short, so a test sees the other server's events
# within a fraction of a second.
RELAY_INTERVAL = 0.05


@pytest.fixture
async def two_chat_servers(db_url: str) -> AsyncIterator[list[ChatWorld]]:
    """Two real chat servers on one database (each backend), with a fast relay."""
    async with chat_servers(db_url, 2, relay_interval=RELAY_INTERVAL) as worlds:
        yield worlds
