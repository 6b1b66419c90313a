"""A lead's new score reaches its open page, the lead list and the lead board
within a second of the click that saved the edit."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from playwright.async_api import Page
from redis.asyncio import Redis

from app.leads.service import create_lead
from app.leads.tables import Lead
from app.scoring.admin import add_rule
from app.scoring.service import rescore_lead
from app.scoring.tables import ScoringRule
from app.workflows.jobs import close_queue
from tests.e2e.conftest import signed_in_page, wait_live, wait_until
from tests.factories import make_user, unique
from tests.servers import worker_process
from workers.connection import queue_name

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.timeout(120),
]

PAGE_SCORE = "#lead-{}-score [data-field=score]"
ROW_SCORE = "#lead-row-{} [data-field=score]"
CARD_SCORE = "#lead-card-{} .lead-score"
COMPANY_POINTS = 30
# From the click on "Save" to the new score on every open page.
MAX_SECONDS = 1.0


async def shown(page: Page, selector: str) -> str | None:
    return await page.evaluate(
        "(selector) => document.querySelector(selector)?.textContent ?? null",
        selector,
    )


async def seconds_until_changed(
    page: Page, selector: str, before: str | None, clicked_at: float
) -> float:
    """Wait for ``selector``'s text to differ from ``before``.

    Returns the seconds from ``clicked_at`` to the moment the test saw it.
    """
    await wait_until(
        page,
        "([selector, before]) => {"
        "  const text = document.querySelector(selector)?.textContent;"
        "  return text !== undefined && text !== before;"
        "}",
        [selector, before],
        timeout_ms=20_000,
    )
    return time.monotonic() - clicked_at


async def wait_for_ready_worker() -> None:
    """Wait until a worker polls the queue and has run a rescoring job.

    arq writes its health check key on its first poll. The warm-up job
    makes sure the imports and the database pool are ready before the
    timed edit.
    """
    health_key = queue_name(os.environ["REDIS_PREFIX"]) + ":health-check"
    redis = Redis.from_url(os.environ["REDIS_URL"])
    try:
        async with asyncio.timeout(30):
            # Polling is the point: the worker signals nothing to wait on.
            while not await redis.exists(health_key):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()

    # Creating a lead queues its first rescoring, which sets rule_score.
    warm_up = await create_lead({"name": unique("Warm-up lead")}, None)
    async with asyncio.timeout(30):
        while True:
            row = await Lead.select(Lead.rule_score).where(Lead.id == warm_up).first()
            if row is not None and row["rule_score"] is not None:
                return
            await asyncio.sleep(0.05)


async def test_edited_lead_score_updates_open_pages(browser, server) -> None:
    await ScoringRule.delete(force=True)
    await add_rule(
        {
            "kind": "field",
            "field": "company",
            "value": "",
            "points": str(COMPANY_POINTS),
        },
        None,
    )
    viewer = await make_user("sales_manager")
    editor = await make_user("sales_manager")
    name = unique("Live lead")
    lead_id = await create_lead({"name": name}, viewer.id)
    await rescore_lead(lead_id)

    viewer_context, lead_page = await signed_in_page(browser, server, viewer.email)
    list_page = await viewer_context.new_page()
    board_page = await viewer_context.new_page()
    editor_context, editor_page = await signed_in_page(browser, server, editor.email)
    try:
        with worker_process():
            await wait_for_ready_worker()
            await lead_page.goto(f"/leads/{lead_id}")
            await list_page.goto(f"/leads?q={name}")
            await board_page.goto("/leads/board")
            for page in (lead_page, list_page, board_page):
                await wait_live(page)
            # A model trained by another test may add its part to the rules'.
            before = await shown(lead_page, PAGE_SCORE.format(lead_id))
            row_before = await shown(list_page, ROW_SCORE.format(lead_id))
            card_before = await shown(board_page, CARD_SCORE.format(lead_id))
            assert row_before == before
            assert card_before == before

            await editor_page.goto(f"/leads/{lead_id}")
            await editor_page.fill(f"#lead-{lead_id}-form input[name=company]", "Acme")
            clicked_at = time.monotonic()
            await editor_page.click(f"#lead-{lead_id}-form button[type=submit]")
            page_seconds, row_seconds, card_seconds = await asyncio.gather(
                seconds_until_changed(
                    lead_page, PAGE_SCORE.format(lead_id), before, clicked_at
                ),
                seconds_until_changed(
                    list_page, ROW_SCORE.format(lead_id), row_before, clicked_at
                ),
                seconds_until_changed(
                    board_page, CARD_SCORE.format(lead_id), card_before, clicked_at
                ),
            )
            after = await shown(lead_page, PAGE_SCORE.format(lead_id))
            row_after = await shown(list_page, ROW_SCORE.format(lead_id))
            card_after = await shown(board_page, CARD_SCORE.format(lead_id))

        lead = (
            await Lead.select(Lead.company, Lead.rule_score, Lead.score)
            .where(Lead.id == lead_id)
            .first()
        )
        assert lead is not None
        assert lead["company"] == "Acme"
        assert lead["rule_score"] == COMPANY_POINTS
        assert after == str(lead["score"])
        assert row_after == str(lead["score"])
        assert card_after == str(lead["score"])
        print(
            f"score shown after {page_seconds:.2f} s (page), {row_seconds:.2f} s "
            f"(list row), {card_seconds:.2f} s (board card)"
        )
        assert page_seconds < MAX_SECONDS, f"lead page: {page_seconds:.2f} s"
        assert row_seconds < MAX_SECONDS, f"lead list row: {row_seconds:.2f} s"
        assert card_seconds < MAX_SECONDS, f"lead board card: {card_seconds:.2f} s"
        factors = await lead_page.locator(f"#lead-{lead_id}-score li").all_inner_texts()
        assert any("company is answered" in text for text in factors)
    finally:
        await viewer_context.close()
        await editor_context.close()
        await ScoringRule.delete(force=True)
        await close_queue()
