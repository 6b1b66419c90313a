"""Pages fit a phone's width: wide tables and boards scroll inside their
own box, and the page itself never scrolls sideways."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import signed_in_page
from tests.factories import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

PHONE = {"width": 390, "height": 844}
PAGES = [
    "/forecast",
    "/deals",
    "/search?q=a",
    "/tickets",
    "/accounts",
    "/contacts",
    "/leads",
    "/campaigns",
    "/tasks",
    "/import",
    "/admin/workflows",
    "/admin/users",
    "/admin/audit",
]


async def test_pages_fit_phone_width(browser, server) -> None:
    user = await make_user("admin")
    context, page = await signed_in_page(browser, server, user.email)
    await page.set_viewport_size(PHONE)
    too_wide = {}

    for path in PAGES:
        response = await page.goto(path)
        assert response is not None
        assert response.status == 200, path
        width = await page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            too_wide[path] = width

    assert too_wide == {}
    await context.close()
