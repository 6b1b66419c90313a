"""Fixtures that several integration test modules share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from app.access.tables import Role
from app.workflows import clock
from app.workflows.tables import WorkflowRule
from tests.factories import MADE_ROLES
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


@pytest_asyncio.fixture(autouse=True)
async def clear_made_roles() -> AsyncIterator[None]:
    """Clear the field rules of the roles a test made with ``make_role``."""
    yield
    if MADE_ROLES:
        await Role.update({Role.field_rules: {}}).where(Role.name.is_in(MADE_ROLES))
        MADE_ROLES.clear()


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    """A web server for the module's tests. A module that needs other
    settings defines its own ``server``, which takes precedence."""
    with web_server() as running:
        yield running
