"""`web`: the real site on each database backend (see tests/conftest.py's `db_url`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.web.harness import WebWorld, running_site


@pytest.fixture
async def web(db_url: str) -> AsyncIterator[WebWorld]:
    async with running_site(db_url) as world:
        yield world
