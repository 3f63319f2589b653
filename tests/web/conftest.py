"""`web`: the real site on each database backend (see tests/conftest.py's `db_url`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.web.harness import WebWorld, running_site


@pytest.fixture
async def web(db_url: str) -> AsyncIterator[WebWorld]:
    async with running_site(db_url) as world:
        yield world


@pytest.fixture
async def live_web(db_url: str) -> AsyncIterator[WebWorld]:
    """The site with a real chat server beside it (the live pages' WebSocket)."""
    async with running_site(db_url, chat=True) as world:
        yield world
