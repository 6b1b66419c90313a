"""The rule builder in Chromium: condition and action rows, nested condition
groups kept as they are stored, and the order of rules, which decides what
a later rule reads."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from app.tickets.service import create_ticket
from app.tickets.tables import Ticket
from app.workflows import service
from app.workflows.schema import decode_definition
from app.workflows.tables import WorkflowRule
from tests.e2e.conftest import signed_in_page, wait_until
from tests.factories import make_user

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.timeout(120),
]

FIRST_FIELD = {"condition": "field", "group": "match", "action": "kind"}
HIGHEST_INDEX = """(selector) => {
    let highest = -1;
    document.querySelectorAll(selector + " [name]").forEach((field) => {
        const match = /^(condition|group|action)\\.(\\d+)\\./.exec(field.name);
        if (match) highest = Math.max(highest, Number(match[2]));
    });
    return highest;
}"""


async def add_row(page, kind: str, group: int | None = None) -> int:
    """Click the add button of ``kind`` (in ``group``); return the row's number."""
    scope = '[data-rows="action"]' if kind == "action" else '[data-rows="condition"]'
    index = await page.evaluate(HIGHEST_INDEX, scope) + 1
    if group is None:
        button = f'#rule-form button[data-add-row="{kind}"]:not([data-group])'
    else:
        button = f'fieldset[data-group="{group}"] > p > button[data-add-row="{kind}"]'
    await page.click(button)
    await page.wait_for_selector(f'[name="{kind}.{index}.{FIRST_FIELD[kind]}"]')
    return index


async def set_condition(page, index: int, field: str, op: str, value: str) -> None:
    await page.select_option(f'select[name="condition.{index}.field"]', field)
    await page.select_option(f'select[name="condition.{index}.op"]', op)
    await page.fill(f'input[name="condition.{index}.value"]', value)


async def remove_row(page, selector: str) -> None:
    await page.click(
        f"{selector} > [data-remove-row], {selector} > p > [data-remove-row]"
    )
    await wait_until(page, "(s) => document.querySelector(s) === null", selector)


async def stored_definition(rule_id: int) -> dict[str, Any]:
    rule = await service.get_rule(rule_id)
    return msgspec.to_builtins(decode_definition(rule["definition"]))


def condition(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"type": "condition", "field": field, "op": op, "value": value}


async def test_builder_keeps_nested_groups(browser, server) -> None:
    admin = await make_user("admin")
    marker = uuid.uuid4().hex[:8]
    context, page = await signed_in_page(browser, server, admin.email)
    rule_id = None
    try:
        await page.goto("/admin/workflows/new?object_type=ticket")
        await page.fill("input[name=name]", f"Nested {marker}")

        top = await add_row(page, "condition")
        await set_condition(page, top, "priority", "equals", "urgent")
        discarded = await add_row(page, "condition")
        await remove_row(page, f'fieldset[data-condition="{discarded}"]')

        outer = await add_row(page, "group")
        await page.select_option(f'select[name="group.{outer}.match"]', "any")
        channel = await add_row(page, "condition", group=outer)
        await set_condition(page, channel, "channel", "equals", "email")
        inner = await add_row(page, "group", group=outer)
        subject = await add_row(page, "condition", group=inner)
        await set_condition(page, subject, "subject", "contains", marker)
        kind = await add_row(page, "condition", group=inner)
        await set_condition(page, kind, "type", "equals", "incident")
        # A group added and removed again leaves nothing behind.
        spare = await add_row(page, "group")
        await add_row(page, "condition", group=spare)
        await remove_row(page, f'fieldset[data-group="{spare}"]')

        # A new rule's page starts with one empty action row.
        tag = 0
        await page.select_option(f'select[name="action.{tag}.kind"]', "add_tag")
        await page.fill(f'input[name="action.{tag}.tag"]', "hot")
        dropped = await add_row(page, "action")
        await page.select_option(f'select[name="action.{dropped}.kind"]', "webhook")
        await remove_row(
            page, f'[data-rows="action"] > fieldset:has([name="action.{dropped}.kind"])'
        )
        note = await add_row(page, "action")
        await page.select_option(f'select[name="action.{note}.kind"]', "add_note")
        await page.fill(f'textarea[name="action.{note}.body"]', "Escalated by rule")

        await page.click("#save-rule")
        await page.wait_for_url(lambda url: url.rstrip("/").split("/")[-1].isdigit())
        rule_id = int(page.url.rstrip("/").split("/")[-1])

        saved = await stored_definition(rule_id)
        inner_group = {
            "type": "group",
            "match": "all",
            "items": [
                condition("subject", "contains", marker),
                condition("type", "equals", "incident"),
            ],
        }
        assert saved["conditions"] == {
            "type": "group",
            "match": "all",
            "items": [
                condition("priority", "equals", "urgent"),
                {
                    "type": "group",
                    "match": "any",
                    "items": [condition("channel", "equals", "email"), inner_group],
                },
            ],
        }
        assert [action["kind"] for action in saved["actions"]] == [
            "add_tag",
            "add_note",
        ]

        # The saved rule's page shows the groups nested as stored.
        assert await page.locator("#conditions > fieldset[data-group]").count() == 1
        nested = "#conditions > fieldset[data-group] fieldset[data-group]"
        assert await page.locator(nested).count() == 1
        assert await page.locator(f"{nested} fieldset[data-condition]").count() == 2
        outer_match = page.locator("#conditions > fieldset[data-group] > label select")
        assert await outer_match.input_value() == "any"
        values = await page.eval_on_selector_all(
            f"{nested} input[name$='.value']", "(inputs) => inputs.map((i) => i.value)"
        )
        assert values == [marker, "incident"]

        # Edit the saved rule: the inner group becomes any-of, and the outer
        # group loses its channel condition.
        inner_select = page.locator(f"{nested} > label select")
        await inner_select.select_option("any")
        channel_row = (
            "#conditions > fieldset[data-group] > div > fieldset[data-condition]"
        )
        await page.click(f"{channel_row} > [data-remove-row]")
        await page.click("#save-rule")
        await page.wait_for_selector("text=Version 2")

        edited = await stored_definition(rule_id)
        assert edited["conditions"]["items"][1] == {
            "type": "group",
            "match": "any",
            "items": [{**inner_group, "match": "any"}],
        }
    finally:
        await context.close()
        if rule_id is not None:
            await WorkflowRule.delete().where(WorkflowRule.id == rule_id)


async def order_on_page(page, rule_ids: list[int]) -> list[int]:
    row_ids = await page.eval_on_selector_all(
        "#rules tbody tr", "(rows) => rows.map((row) => row.id)"
    )
    return [
        int(row_id.split("-")[1])
        for row_id in row_ids
        if int(row_id.split("-")[1]) in rule_ids
    ]


async def tags_of(ticket_id: int) -> list[str]:
    rows = await Ticket.raw("SELECT tags FROM ticket WHERE id = {}", ticket_id)
    return list(rows[0]["tags"] or [])


async def test_rule_order_changes_outcome(browser, server) -> None:
    admin = await make_user("admin")
    marker = uuid.uuid4().hex[:8]
    only_mine = condition("subject", "contains", marker)
    raise_priority = await service.save_rule(
        None,
        "ticket",
        f"Raise {marker}",
        {
            "trigger": {"kind": "created"},
            "conditions": {"type": "group", "items": [only_mine]},
            "actions": [{"kind": "set_field", "field": "priority", "value": "high"}],
        },
        None,
    )
    tag_high = await service.save_rule(
        None,
        "ticket",
        f"Tag high {marker}",
        {
            "trigger": {"kind": "created"},
            "conditions": {
                "type": "group",
                "items": [only_mine, condition("priority", "equals", "high")],
            },
            "actions": [{"kind": "add_tag", "tag": "escalated"}],
        },
        None,
    )
    rule_ids = [raise_priority, tag_high]
    for rule_id in rule_ids:
        await service.set_enabled(rule_id, True, None)
    context, page = await signed_in_page(browser, server, admin.email)
    try:
        await page.goto("/admin/workflows?object_type=ticket")
        assert await order_on_page(page, rule_ids) == [raise_priority, tag_high]
        # The tagging rule runs second, so it reads the priority the first one set.
        first = await create_ticket({"subject": f"Order {marker} 1"}, None)
        assert await tags_of(first) == ["escalated"]

        async with page.expect_navigation():
            await page.click(f'button[aria-label="Move up: Tag high {marker}"]')
        assert await order_on_page(page, rule_ids) == [tag_high, raise_priority]
        # Now it runs first, while the ticket is still of medium priority.
        second = await create_ticket({"subject": f"Order {marker} 2"}, None)
        assert await tags_of(second) == []
        stored = await Ticket.select(Ticket.priority).where(Ticket.id == second).first()
        assert stored["priority"] == "high"

        async with page.expect_navigation():
            await page.click(f'button[aria-label="Move down: Tag high {marker}"]')
        assert await order_on_page(page, rule_ids) == [raise_priority, tag_high]
        third = await create_ticket({"subject": f"Order {marker} 3"}, None)
        assert await tags_of(third) == ["escalated"]
    finally:
        await context.close()
        await WorkflowRule.delete().where(WorkflowRule.id.is_in(rule_ids))
