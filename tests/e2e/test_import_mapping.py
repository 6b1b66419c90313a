"""Mapping the columns of an uploaded CSV in the browser, previewing it,
running it with a real worker and downloading the rejected rows."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from app.deals.tables import Deal
from tests.e2e.conftest import signed_in_page, wait_live
from tests.factories import make_pipeline, make_user, unique
from tests.servers import worker_process

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ROWS = 3000
BAD_LINES = {3: "not an amount", 1500: "unknown stage"}


def deals_file(path: Path, ref: str) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Ref", "Deal title", "Worth", "Step"])
    for number in range(1, ROWS + 1):
        line = number + 1
        worth = "plenty" if BAD_LINES.get(line) == "not an amount" else str(number)
        step = "Nowhere" if BAD_LINES.get(line) == "unknown stage" else "Engaging"
        writer.writerow([f"{ref}-{number}", f"Deal {number}", worth, step])
    path.write_text(buffer.getvalue())
    return path


async def test_map_preview_run_and_download(browser, server, tmp_path: Path) -> None:
    user = await make_user("admin")
    pipeline = await make_pipeline()
    ref = unique("e2e").replace(" ", "")
    upload = deals_file(tmp_path / "pipeline-export.csv", ref)
    context, page = await signed_in_page(browser, server, user.email)

    await page.goto("/import")
    form = page.locator("#map-upload form")
    await form.locator("select[name=target]").select_option("deal")
    await form.locator("input[name=file]").set_input_files(str(upload))
    await form.locator("button[type=submit]").click()
    await page.wait_for_url("**/import/*/mapping")

    for header, field in (
        ("Ref", "external_id"),
        ("Deal title", "name"),
        ("Worth", "amount"),
        ("Step", "stage"),
    ):
        await page.select_option(f"select[data-header='{header}']", field)
    await page.select_option("select[name=pipeline]", str(pipeline["id"]))

    await page.click("button[value=preview]")
    await page.locator("#preview").wait_for()
    assert await page.locator("#preview tbody tr").count() == 20
    bad = page.locator("#preview tr[data-line='3']")
    assert "rejected" in (await bad.get_attribute("class") or "")
    assert "Worth" in await bad.text_content()
    assert "not an amount" in await bad.text_content()
    assert await Deal.count().where(Deal.external_key.like(f"csv-deal:{ref}-%")) == 0

    with worker_process():
        await page.click("button[value=run]")
        await page.wait_for_url("**/import/*")
        await page.evaluate(
            "window.pushed = 0;"
            "document.addEventListener('htmx:wsAfterMessage', () => window.pushed++)"
        )
        await wait_live(page)
        await page.locator("[data-state=done]").wait_for(timeout=60_000)

    assert await page.evaluate("window.pushed") >= 1
    done = await page.get_attribute("progress", "value")
    total = await page.get_attribute("progress", "max")
    assert done == total == str(ROWS)
    assert "2 failed" in (await page.text_content("[data-state=done]") or "")
    imported = await Deal.count().where(Deal.external_key.like(f"csv-deal:{ref}-%"))
    assert imported == ROWS - len(BAD_LINES)

    async with page.expect_download() as waiting:
        await page.click("a.rejected-report")
    download = await waiting.value
    saved = tmp_path / "rejected.csv"
    await download.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert [int(row["line"]) for row in rows] == sorted(BAD_LINES)
    for row in rows:
        assert BAD_LINES[int(row["line"])] in row["errors"]
        assert row["Ref"].startswith(ref)
    await context.close()
