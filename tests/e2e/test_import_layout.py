"""The Import page's forms stay inside their cards on wide and narrow screens."""

from __future__ import annotations

import os

import pytest

from tests.e2e.conftest import signed_in_page
from tests.factories import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# The names of the form controls that reach past their card's right edge.
OVERFLOWS = """() => [...document.querySelectorAll('section.panel form')]
.flatMap(form => {
  const card = form.closest('section').getBoundingClientRect();
  return [...form.querySelectorAll('select, input:not([type=hidden]), button')]
    .filter(control => control.getBoundingClientRect().right > card.right + 0.5)
    .map(control => control.name || control.textContent.trim());
})"""


@pytest.mark.parametrize("width", [1400, 390])
async def test_import_forms_fit_their_cards(browser, server, width) -> None:
    user = await make_user("admin")
    context, page = await signed_in_page(browser, server, user.email)
    await page.set_viewport_size({"width": width, "height": 900})

    await page.goto("/import")
    shots = os.environ.get("CRM_SCREENSHOTS")
    if shots:
        await page.screenshot(path=f"{shots}/import-{width}.png", full_page=True)

    assert await page.evaluate(OVERFLOWS) == []
    await context.close()
