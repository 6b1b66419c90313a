"""Pages that were away catch up, and people on one record see each other."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import signed_in_page, wait_live
from tests.factories import make_deal, make_pipeline, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_offline_page_catches_up_without_reload(browser, server) -> None:
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, stage_index=0, amount="1000")
    first, second = pipeline["stages"][:2]
    away = await make_user(name="Away Person")
    mover = await make_user()
    away_context, away_page = await signed_in_page(browser, server, away.email)
    mover_context, mover_page = await signed_in_page(browser, server, mover.email)
    board = f"/pipelines/{pipeline['id']}"
    await away_page.goto(board)
    await mover_page.goto(board)
    await wait_live(away_page)
    await wait_live(mover_page)
    await away_page.evaluate("window.notReloaded = true")

    await away_context.set_offline(True)
    await away_page.locator("#live-status").wait_for(state="visible")
    await mover_page.select_option(f"#deal-{deal_id} select[name=stage]", str(second))
    await mover_page.locator(f"#stage-{second}-cards #deal-{deal_id}").wait_for()
    await away_page.wait_for_timeout(500)
    assert await away_page.locator(f"#stage-{first}-cards #deal-{deal_id}").count() == 1

    await away_context.set_offline(False)

    await away_page.locator(f"#stage-{second}-cards #deal-{deal_id}").wait_for(
        timeout=5000
    )
    await away_page.locator("#live-status").wait_for(state="hidden")
    assert await away_page.text_content(f"#stage-{second}-head .total") == "$1,000"
    assert await away_page.evaluate("window.notReloaded") is True
    await away_context.close()
    await mover_context.close()


async def test_people_on_one_deal_see_each_other_editing(browser, server) -> None:
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline)
    dana = await make_user(name="Dana Editor")
    sam = await make_user(name="Sam Viewer")
    dana_context, dana_page = await signed_in_page(browser, server, dana.email)
    sam_context, sam_page = await signed_in_page(browser, server, sam.email)
    await dana_page.goto(f"/deals/{deal_id}")
    await sam_page.goto(f"/deals/{deal_id}")
    await wait_live(dana_page)
    await wait_live(sam_page)

    dana_avatar = sam_page.locator(
        f"#presence-deal-{deal_id} [data-user-id='{dana.id}']"
    )
    sam_avatar = dana_page.locator(
        f"#presence-deal-{deal_id} [data-user-id='{sam.id}']"
    )
    await dana_avatar.wait_for(timeout=3000)
    await sam_avatar.wait_for(timeout=3000)
    assert await dana_avatar.text_content() == "DE"
    own = dana_page.locator(f"#presence-deal-{deal_id} [data-user-id='{dana.id}']")
    assert await own.is_hidden()

    await dana_page.focus(f"#deal-{deal_id}-form input[name=amount]")

    marker = sam_page.locator(f"#editing-deal-{deal_id}-amount")
    await marker.filter(has_text="Dana Editor is editing").wait_for(timeout=3000)

    await dana_page.fill("textarea[name=body]", "Checking the numbers")
    typing = sam_page.locator(f"#typing-deal-{deal_id}")
    await typing.filter(has_text="Dana Editor is typing").wait_for(timeout=3000)
    await dana_context.close()

    # A closed tab leaves at once.
    await dana_avatar.wait_for(state="detached", timeout=3000)
    await sam_context.close()


async def test_field_conflict_shows_the_panel(browser, server) -> None:
    pipeline = await make_pipeline()
    deal_id = await make_deal(pipeline, amount="100")
    first_user = await make_user(name="Fran First")
    second_user = await make_user(name="Gil Second")
    first_context, first_page = await signed_in_page(browser, server, first_user.email)
    second_context, second_page = await signed_in_page(
        browser, server, second_user.email
    )
    await first_page.goto(f"/deals/{deal_id}")
    await second_page.goto(f"/deals/{deal_id}")
    form = f"#deal-{deal_id}-form"

    await first_page.fill(f"{form} input[name=amount]", "300")
    await second_page.fill(f"{form} input[name=amount]", "500")
    await second_page.fill(f"{form} input[name=name]", "Renamed by Gil")
    await first_page.click(f"{form} button[type=submit]")
    await first_page.locator(f"{form} .form-ok").wait_for()
    await second_page.click(f"{form} button[type=submit]")

    panel = second_page.locator(f"{form} .conflicts")
    await panel.wait_for()
    assert "Fran First set it to" in await panel.text_content()
    assert "300.00" in await panel.text_content()
    assert await second_page.input_value(f"{form} input[name=amount]") == "500"
    # The other field merged; the summary on the first page shows it live.
    await first_page.locator(
        f"#deal-{deal_id}-summary h1", has_text="Renamed by Gil"
    ).wait_for()

    await second_page.click(f"{form} button[type=submit]")
    await second_page.locator(f"{form} .form-ok").wait_for()
    await first_page.locator(
        f"#deal-{deal_id}-summary [data-field=amount]", has_text="$500"
    ).wait_for()
    await first_context.close()
    await second_context.close()


async def test_stage_save_updates_breadcrumb(browser, server) -> None:
    pipeline = await make_pipeline(("Presentation Scheduled", "Closed Won", "Lost"))
    deal_id = await make_deal(pipeline, stage_index=0)
    won = pipeline["stages"][1]
    editor = await make_user(name="Erin Editor")
    viewer = await make_user(name="Vic Viewer")
    editor_context, editor_page = await signed_in_page(browser, server, editor.email)
    viewer_context, viewer_page = await signed_in_page(browser, server, viewer.email)
    await editor_page.goto(f"/deals/{deal_id}")
    await viewer_page.goto(f"/deals/{deal_id}")
    await wait_live(editor_page)
    await wait_live(viewer_page)
    form = f"#deal-{deal_id}-form"
    crumbs = "nav.crumbs"
    assert "Presentation Scheduled" in await editor_page.text_content(crumbs)

    await editor_page.select_option(f"{form} select[name=stage]", str(won))
    await editor_page.click(f"{form} button[type=submit]")
    await editor_page.locator(f"{form} .form-ok").wait_for()

    for page in (editor_page, viewer_page):
        await page.locator(crumbs, has_text="Closed Won").wait_for()
        assert "Presentation Scheduled" not in await page.text_content(crumbs)
        stage = page.locator(f"#deal-{deal_id}-summary [data-field=stage]")
        assert await stage.text_content() == "Closed Won"
    await editor_context.close()
    await viewer_context.close()


async def test_missed_sign_out_opens_login(browser, server) -> None:
    from app.auth.sessions import end_all_sessions

    pipeline = await make_pipeline()
    user = await make_user()
    context, page = await signed_in_page(browser, server, user.email)
    board = f"/pipelines/{pipeline['id']}"
    await page.goto(board)
    await wait_live(page)

    await context.set_offline(True)
    await page.locator("#live-status").wait_for(state="visible")
    # Signed out everywhere while this tab could not hear of it.
    await end_all_sessions(user.id)
    await context.set_offline(False)

    await page.wait_for_url(f"**/login?next={board.replace('/', '%2F')}", timeout=10000)
    await context.close()
