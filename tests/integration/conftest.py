"""Fixtures that several integration test modules share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from app.workflows import clock
from app.workflows.tables import WorkflowRule


@pytest_asyncio.fixture
async def rules() -> AsyncIterator[list[int]]:
    """Rule ids a test creates, deleted after it so that they cannot act on
    other tests' records. The workflow clock is reset to real time after it."""
    created: list[int] = []
    yield created
    if created:
        await WorkflowRule.delete().where(WorkflowRule.id.is_in(created))
    clock.reset()
