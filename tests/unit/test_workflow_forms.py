"""The rule builder's form to definition data and back, with nested groups."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar.datastructures import FormMultiDict

from app.errors import FieldError
from app.workflows.forms import add_row, definition_from_form, form_values, typed_values
from app.workflows.schema import RuleDefinition

NESTED = {
    "trigger": {"kind": "created"},
    "conditions": {
        "type": "group",
        "match": "all",
        "items": [
            {
                "type": "condition",
                "field": "priority",
                "op": "equals",
                "value": "urgent",
            },
            {
                "type": "group",
                "match": "any",
                "items": [
                    {
                        "type": "condition",
                        "field": "channel",
                        "op": "equals",
                        "value": "email",
                    },
                    {
                        "type": "group",
                        "match": "all",
                        "items": [
                            {
                                "type": "condition",
                                "field": "subject",
                                "op": "contains",
                                "value": "outage",
                            },
                            {
                                "type": "condition",
                                "field": "status",
                                "op": "in",
                                "value": ["new", "open"],
                            },
                        ],
                    },
                ],
            },
            {"type": "condition", "field": "type", "op": "is_empty", "value": ""},
        ],
    },
    "actions": [{"kind": "add_tag", "tag": "hot"}],
}


def fields_of(items: list[dict[str, Any]], flat: dict[str, str]) -> None:
    """Write the builder's rows as the browser would post them."""
    for item in items:
        index = item["index"]
        parent = "" if item["parent"] is None else str(item["parent"])
        if item["type"] == "group":
            flat[f"group.{index}.group"] = parent
            flat[f"group.{index}.match"] = item["match"]
            fields_of(item["items"], flat)
            continue
        flat[f"condition.{index}.group"] = parent
        flat[f"condition.{index}.field"] = item["field"]
        flat[f"condition.{index}.op"] = item["op"]
        flat[f"condition.{index}.value"] = str(item["value"])


def posted(values: dict[str, Any]) -> dict[str, str]:
    flat = {"trigger.kind": values["trigger"].kind, "match": values["match"]}
    fields_of(values["conditions"], flat)
    flat["action.0.kind"] = "add_tag"
    flat["action.0.tag"] = "hot"
    return flat


def conditions_of(form: dict[str, str]) -> dict[str, Any]:
    return definition_from_form(FormMultiDict(form))["conditions"]


def test_nested_groups_survive_round_trip() -> None:
    definition = msgspec.convert(NESTED, RuleDefinition)

    values = form_values(definition)
    again = definition_from_form(FormMultiDict(posted(values)))

    assert msgspec.convert(again, RuleDefinition) == definition


def test_form_values_number_items_in_order() -> None:
    values = form_values(msgspec.convert(NESTED, RuleDefinition))
    items = values["conditions"]

    assert [item["type"] for item in items] == ["condition", "group", "condition"]
    assert [item["index"] for item in items] == [0, 1, 6]
    group = items[1]
    assert group["match"] == "any"
    assert [child["index"] for child in group["items"]] == [2, 3]
    assert group["items"][1]["parent"] == 1
    inner = group["items"][1]["items"]
    assert [child["parent"] for child in inner] == [3, 3]
    assert inner[1]["value"] == "new, open"


def test_rows_added_later_join_their_group() -> None:
    form = {
        "match": "any",
        "condition.0.field": "priority",
        "condition.0.value": "urgent",
        "group.1.match": "all",
        "condition.2.group": "1",
        "condition.2.field": "channel",
        "condition.2.value": "email",
        # Added to the group after a top-level row, so numbered after it.
        "condition.3.field": "type",
        "condition.3.value": "bug",
        "condition.4.group": "1",
        "condition.4.field": "subject",
        "condition.4.op": "contains",
        "condition.4.value": "down",
    }

    conditions = conditions_of(form)

    assert conditions["match"] == "any"
    top = conditions["items"]
    assert [item.get("field") for item in top] == ["priority", None, "type"]
    assert top[1]["type"] == "group"
    assert [item["field"] for item in top[1]["items"]] == ["channel", "subject"]


def test_empty_group_and_rows_skipped() -> None:
    form = {
        "condition.0.field": "priority",
        "condition.0.value": "urgent",
        "group.1.match": "any",
        "condition.2.group": "1",
        "condition.2.field": "",
    }

    conditions = conditions_of(form)

    assert conditions["items"] == [
        {"type": "condition", "field": "priority", "op": "equals", "value": "urgent"}
    ]


@pytest.mark.parametrize(
    ("form", "field", "value"),
    [
        (
            {"condition.0.group": "7", "condition.0.field": "priority"},
            "condition.0.group",
            "7",
        ),
        (
            {
                "group.2.match": "all",
                "condition.1.group": "2",
                "condition.1.field": "type",
            },
            "condition.1.group",
            "2",
        ),
        ({"group.0.group": "0"}, "group.0.group", "0"),
        ({"group.0.group": "x"}, "group.0.group", "x"),
    ],
)
def test_row_outside_known_group_rejected(
    form: dict[str, str], field: str, value: str
) -> None:
    with pytest.raises(FieldError) as raised:
        conditions_of(form)

    assert raised.value.field == field
    assert raised.value.value == value


TYPED = FormMultiDict(
    {
        "trigger.kind": "time_after",
        "trigger.delay_minutes": "1h",
        "match": "any",
        "condition.0.field": "priority",
        "condition.0.op": "equals",
        "condition.0.value": "urgent",
        "group.1.match": "any",
        "group.1.group": "",
        "condition.2.field": "subject",
        "condition.2.op": "contains",
        "condition.2.value": "typed",
        "condition.2.group": "1",
        "condition.3.field": "type",
        "condition.3.group": "7",
        "action.0.kind": "create_task",
        "action.0.due_in_minutes": "abc",
    }
)


def test_typed_values_keep_raw_text() -> None:
    values = typed_values(TYPED)

    assert values["trigger"]["kind"] == "time_after"
    assert values["trigger"]["delay_minutes"] == "1h"
    assert values["match"] == "any"
    assert values["actions"][0]["kind"] == "create_task"
    assert values["actions"][0]["due_in_minutes"] == "abc"
    assert values["actions"][0]["body"] == ""
    top = values["conditions"]
    assert [item["index"] for item in top] == [0, 1, 3]
    assert top[1]["type"] == "group"
    assert top[1]["items"][0]["value"] == "typed"
    assert top[1]["items"][0]["parent"] == 1
    # A row naming a group the form lacks is shown at the top level.
    assert top[2]["parent"] is None


def test_add_row_numbers_after_highest() -> None:
    values = typed_values(TYPED)

    add_row(values, "condition:1")
    add_row(values, "group")
    add_row(values, "action")
    add_row(values, "nonsense")

    in_group = values["conditions"][1]["items"]
    assert [item["index"] for item in in_group] == [2, 4]
    assert in_group[1]["parent"] == 1
    assert values["conditions"][-1]["type"] == "group"
    assert values["conditions"][-1]["index"] == 5
    assert len(values["actions"]) == 2
