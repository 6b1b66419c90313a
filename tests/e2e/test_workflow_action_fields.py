"""The rule builder in Chromium shows only the fields of an action's kind,
and builds a rule with JavaScript turned off."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Page

from app.workflows import service
from app.workflows.schema import ACTION_FIELDS, Condition, Group, decode_definition
from app.workflows.tables import WorkflowRule
from tests.e2e.conftest import signed_in_page, wait_until
from tests.factories import make_user

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.timeout(90),
]

SHOWN_FIELDS = """(row) => Array.from(
    document.querySelectorAll(
        `[data-action-row]:has([name="action.${row}.kind"]) [data-action-field]`
    )
).filter((label) => !label.hidden && label.offsetParent !== null)
 .map((label) => label.dataset.actionField)
 .sort()"""


async def shown_fields(page: Page, row: int) -> list[str]:
    return await page.evaluate(SHOWN_FIELDS, row)


async def test_action_fields_follow_kind(browser, server) -> None:
    admin = await make_user("admin")
    name = f"Switched {uuid.uuid4().hex[:10]}"
    context, page = await signed_in_page(browser, server, admin.email)
    try:
        await page.goto("/admin/workflows/new?object_type=ticket")
        # A new rule's page starts with one action row, and the script adds
        # a second one in place.
        await page.click('#rule-form button[data-add-row="action"]')
        await page.wait_for_selector('[name="action.1.kind"]')
        assert page.url.endswith("/admin/workflows/new?object_type=ticket")

        # With scripting on, the no-script button stays text, also after htmx
        # added a row.
        assert await page.locator("#rule-form button[name=show_fields]").count() == 0
        # A new row starts as "Set a field", rendered by the server.
        assert await shown_fields(page, 0) == ["field", "value"]
        assert await shown_fields(page, 1) == ["field", "value"]
        await page.click(
            '[data-action-row]:has([name="action.1.kind"]) [data-remove-row]'
        )
        await wait_until(
            page, "() => !document.querySelector('[name=\"action.1.kind\"]')"
        )
        assert not await page.is_visible('[name="action.0.tag"]')

        await page.select_option('select[name="action.0.kind"]', "add_tag")
        await wait_until(
            page,
            "() => !document.querySelector('[data-action-field=tag]').hidden",
        )
        assert await shown_fields(page, 0) == ["tag"]
        assert await page.is_visible('[name="action.0.tag"]')
        assert not await page.is_visible('[name="action.0.field"]')

        await page.select_option('select[name="action.0.kind"]', "send_email")
        await wait_until(
            page,
            "() => !document.querySelector('[data-action-field=subject]').hidden",
        )
        assert await shown_fields(page, 0) == sorted(ACTION_FIELDS["send_email"])
        assert not await page.is_visible('[name="action.0.tag"]')
        # An invalid address left in a field that gets hidden must not block
        # the save below.
        await page.fill('input[name="action.0.to"]', "not an address")

        await page.select_option('select[name="action.0.kind"]', "rescore")
        await wait_until(
            page,
            "() => document.querySelector('[data-action-field=subject]').hidden",
        )
        assert await shown_fields(page, 0) == []

        await page.select_option('select[name="action.0.kind"]', "add_tag")
        await page.fill('input[name="action.0.tag"]', "switched")
        await page.fill("input[name=name]", name)
        await page.click("#save-rule")
        await page.wait_for_url(lambda url: url.rstrip("/").split("/")[-1].isdigit())
        rule = await service.get_rule(int(page.url.rstrip("/").split("/")[-1]))
        saved = decode_definition(rule["definition"])
        assert [action.kind for action in saved.actions] == ["add_tag"]
        assert saved.actions[0].tag == "switched"
        assert saved.actions[0].to is None
    finally:
        await WorkflowRule.delete().where(WorkflowRule.name == name)
        await context.close()


async def test_builder_works_without_scripts(browser, server) -> None:
    admin = await make_user("admin")
    name = f"No script {uuid.uuid4().hex[:10]}"
    context, page = await signed_in_page(browser, server, admin.email, scripts=False)
    try:
        await page.goto("/admin/workflows/new?object_type=ticket")
        assert await page.locator('[name="action.0.kind"]').count() == 1
        assert await page.locator('[name="action.1.kind"]').count() == 0
        await page.fill("input[name=name]", name)
        await page.select_option('select[name="action.0.kind"]', "add_tag")

        # "Add action" posts the form back unsaved, with what was typed and
        # one more row. The chosen kind's fields show after the round trip.
        await page.click('#rule-form button[value="action"]')
        await page.wait_for_selector('[name="action.1.kind"]')
        assert await page.input_value("input[name=name]") == name
        assert await page.input_value('select[name="action.0.kind"]') == "add_tag"
        assert await page.is_visible('[name="action.0.tag"]')
        assert await WorkflowRule.count().where(WorkflowRule.name == name) == 0
        await page.fill('input[name="action.0.tag"]', "no-script")
        await page.select_option('select[name="action.1.kind"]', "add_note")

        await page.click('#rule-form button[value="condition"]')
        await page.wait_for_selector('[name="condition.0.field"]')
        assert await page.input_value('input[name="action.0.tag"]') == "no-script"
        assert await page.is_visible('[name="action.1.body"]')
        await page.fill('textarea[name="action.1.body"]', "Added without scripts")
        await page.select_option('select[name="condition.0.field"]', "priority")
        await page.select_option('select[name="condition.0.op"]', "equals")
        await page.fill('input[name="condition.0.value"]', "urgent")

        await page.click('#rule-form button[value="group"]')
        await page.wait_for_selector('[name="group.1.match"]')
        await page.select_option('select[name="group.1.match"]', "any")
        await page.click('fieldset[data-group="1"] button[value="condition:1"]')
        await page.wait_for_selector('[name="condition.2.field"]')
        assert await page.input_value('[name="condition.2.group"]') == "1"
        assert await page.input_value('input[name="condition.0.value"]') == "urgent"
        await page.select_option('select[name="condition.2.field"]', "subject")
        await page.select_option('select[name="condition.2.op"]', "contains")
        await page.fill('input[name="condition.2.value"]', name)

        # "Remove" posts the form back without the row.
        await page.click('#rule-form button[value="action"]')
        await page.wait_for_selector('[name="action.2.kind"]')
        await page.click('#rule-form button[value="action:2"]')
        await page.wait_for_selector('[name="action.1.kind"]')
        assert await page.locator('[name="action.2.kind"]').count() == 0
        assert await page.input_value('input[name="condition.2.value"]') == name

        # Enter in a field saves, because the first submit button is a save.
        await page.press("input[name=name]", "Enter")
        await page.wait_for_url(lambda url: url.rstrip("/").split("/")[-1].isdigit())
        rule = await service.get_rule(int(page.url.rstrip("/").split("/")[-1]))
        saved = decode_definition(rule["definition"])
        assert [action.kind for action in saved.actions] == ["add_tag", "add_note"]
        assert saved.actions[0].tag == "no-script"
        assert saved.actions[1].body == "Added without scripts"
        top, group = saved.conditions.items
        assert isinstance(top, Condition)
        assert (top.field, top.op, top.value) == ("priority", "equals", "urgent")
        assert isinstance(group, Group)
        assert group.match == "any"
        (inner,) = group.items
        assert isinstance(inner, Condition)
        assert (inner.field, inner.op, inner.value) == ("subject", "contains", name)
    finally:
        await WorkflowRule.delete().where(WorkflowRule.name == name)
        await context.close()
