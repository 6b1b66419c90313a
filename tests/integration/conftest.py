"""Fixtures that several integration test modules share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from app.workflows import clock
from app.workflows.tables import WorkflowRule
from tests.servers import WebServer, web_server


@pytest_asyncio.fixture
async def rules() -> AsyncIterator[list[int]]:
    """Rule ids a test creates, deleted after it so that they cannot act on
    other tests' records. The workflow clock is reset to real time after it."""
    created: list[int] = []
    yield created
    if created:
        await WorkflowRule.delete().where(WorkflowRule.id.is_in(created))
    clock.reset()


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    """A web server for the module's tests. A module that needs other
    settings defines its own ``server``, which takes precedence."""
    with web_server() as running:
        yield running
