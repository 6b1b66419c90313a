"""The lead board in Chromium: a dragged card changes the lead's status on
every open board, and a card moved from a stale status snaps back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from app.leads.service import create_lead, update_lead
from app.leads.tables import Lead
from app.merge import Edit
from app.workflows.jobs import close_queue
from tests.e2e.conftest import drag, signed_in_page, wait_live
from tests.factories import make_team, make_user, unique

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LIVE_TIMEOUT_MS = 1000


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def rescoring_queue() -> AsyncIterator[None]:
    """Close the queue connection that services open to queue rescoring."""
    yield
    await close_queue()


async def test_dragged_lead_moves_on_other_board(browser, server) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    manager = await make_user("sales_manager")
    lead_id = await create_lead({"name": unique("Dragged lead")}, rep.id)
    rep_context, rep_page = await signed_in_page(browser, server, rep.email)
    manager_context, manager_page = await signed_in_page(browser, server, manager.email)
    await rep_page.goto("/leads/board")
    await manager_page.goto("/leads/board")
    await wait_live(rep_page)
    await wait_live(manager_page)

    await drag(rep_page, f"#lead-card-{lead_id}", "#lead-status-working-cards")

    moved = manager_page.locator(f"#lead-status-working-cards #lead-card-{lead_id}")
    await moved.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert (
        await manager_page.locator(
            f"#lead-status-new-cards #lead-card-{lead_id}"
        ).count()
        == 0
    )
    row = await Lead.select(Lead.status).where(Lead.id == lead_id).first()
    assert row is not None
    assert row["status"] == "working"
    await rep_context.close()
    await manager_context.close()


async def test_stale_drag_snaps_back(browser, server) -> None:
    rep = await make_user("sales_rep", team=await make_team())
    manager = await make_user("sales_manager")
    lead_id = await create_lead({"name": unique("Contested lead")}, rep.id)
    context, page = await signed_in_page(browser, server, rep.email)
    await page.goto("/leads/board")
    await wait_live(page)

    async def change_meanwhile() -> None:
        await update_lead(lead_id, {"status": Edit("new", "qualified")}, manager.id)

    await drag(
        page,
        f"#lead-card-{lead_id}",
        "#lead-status-working-cards",
        while_held=change_meanwhile,
    )

    back = page.locator(f"#lead-status-qualified-cards #lead-card-{lead_id}")
    await back.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert (
        await page.locator(f"#lead-status-working-cards #lead-card-{lead_id}").count()
        == 0
    )
    toast = page.locator("#toasts .toast-error", has_text="to qualified meanwhile")
    await toast.wait_for(timeout=LIVE_TIMEOUT_MS)
    row = await Lead.select(Lead.status).where(Lead.id == lead_id).first()
    assert row is not None
    assert row["status"] == "qualified"
    await context.close()
