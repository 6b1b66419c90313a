"""Two-factor sign-in in headless Chromium: enrol, then sign in with codes."""

from __future__ import annotations

import time

import pyotp
import pytest

from tests.e2e.conftest import signed_in_page
from tests.factories import PASSWORD, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_two_factor_enrol_and_sign_in(browser, server) -> None:
    user = await make_user()
    context, page = await signed_in_page(browser, server, user.email)

    await page.goto("/security")
    await page.click("text=Set up two-factor sign-in")
    await page.wait_for_selector("figure.qr-code svg")
    secret = (await page.text_content("code.secret-key") or "").strip()
    await page.fill("input[name=code]", pyotp.TOTP(secret).now())
    await page.click("main button[type=submit]")
    await page.wait_for_selector("ol.recovery-codes")
    codes = await page.locator("ol.recovery-codes code").all_text_contents()
    await context.close()

    assert len(codes) == 10

    for code in (pyotp.TOTP(secret).at(time.time() + 30), codes[0]):
        context = await browser.new_context(base_url=server.url)
        context.set_default_timeout(10_000)
        page = await context.new_page()
        await page.goto("/login?next=/security")
        await page.fill("input[name=email]", user.email)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("main button[type=submit]")
        await page.wait_for_url("**/login/two-factor")

        await page.goto("/pipelines")
        await page.wait_for_url("**/login/two-factor")
        await page.fill("input[name=code]", code)
        await page.click("main button[type=submit]")
        await page.wait_for_url("**/security")

        assert await page.locator("tr.current").count() == 1
        await context.close()
