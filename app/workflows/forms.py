"""Turning the rule builder's form into definition data, and back.

The form has the trigger's fields as ``trigger.<name>``, the top-level
group's ``match``, and numbered rows ``condition.<n>.<name>``,
``group.<n>.<name>`` and ``action.<n>.<name>``. Conditions and nested groups
share one numbering, and each names the group it sits in with ``.group``
(empty for the top level), so nested all-of/any-of groups survive a save.
Items of a group are read in number order. Condition rows without a field
and groups left without conditions are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from litestar.datastructures import FormMultiDict

from app.errors import FieldError
from app.workflows.schema import (
    ACTION_FIELDS,
    MAX_NESTING,
    Action,
    Condition,
    Group,
    RuleDefinition,
    readable_path,
)

TEXT_TRIGGER_FIELDS = ("field", "from_value", "to_value", "stage", "status", "after")
INT_TRIGGER_FIELDS = ("delay_minutes", "calendar_id")
INT_ACTION_FIELDS = (
    "user_id",
    "team_id",
    "due_in_minutes",
    "endpoint_id",
    "template_id",
)
SCHEDULE_FIELDS = ("minute", "hour", "weekday")


def whole_number(path: str, raw: str) -> int | None:
    """Read a number field, rejected under its definition path and labelled as
    people read it ("Action 1 due in minutes", "Trigger delay minutes")."""
    text = raw.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise FieldError(
            path, raw, "is not a whole number", label=readable_path(path)
        ) from None


def rows(form: Mapping[str, str], prefix: str) -> list[dict[str, str]]:
    numbered: dict[int, dict[str, str]] = {}
    for key, value in form.items():
        kind, _, rest = key.partition(".")
        index, _, name = rest.partition(".")
        if kind != prefix or not index.isdigit() or not name:
            continue
        numbered.setdefault(int(index), {})[name] = value
    return [numbered[index] for index in sorted(numbered)]


def condition_data(row: dict[str, str]) -> dict[str, Any] | None:
    field = row.get("field", "").strip()
    if not field:
        return None
    op = row.get("op", "equals")
    text = row.get("value", "")
    value: Any = text
    if op == "in":
        value = [part.strip() for part in text.split(",") if part.strip()]
    return {"type": "condition", "field": field, "op": op, "value": value}


def numbered_rows(flat: Mapping[str, str], prefix: str) -> dict[int, dict[str, str]]:
    numbered: dict[int, dict[str, str]] = {}
    for key, value in flat.items():
        kind, _, rest = key.partition(".")
        index, _, name = rest.partition(".")
        if kind == prefix and index.isdigit() and name:
            numbered.setdefault(int(index), {})[name] = value
    return numbered


def parent_of(
    kind: str, index: int, row: dict[str, str], groups: set[int]
) -> int | None:
    """Return the number of the group a row sits in, None for the top level.

    Raises FieldError when the row names no group of the form, or a group
    numbered after itself, which is how a loop of groups would show.
    """
    raw = row.get("group", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) not in groups or int(raw) >= index:
        raise FieldError(f"{kind}.{index}.group", raw, "is not a group of this rule")
    return int(raw)


def conditions_from_form(flat: Mapping[str, str]) -> dict[str, Any]:
    """Build the condition tree from the condition and group rows."""
    condition_rows = numbered_rows(flat, "condition")
    group_rows = numbered_rows(flat, "group")
    clashes = sorted(condition_rows.keys() & group_rows.keys())
    if clashes:
        raise FieldError(
            f"condition.{clashes[0]}",
            clashes[0],
            "has the number of a group; reload the page and build the rule again",
        )
    groups: dict[int, dict[str, Any]] = {}
    children: dict[int | None, list[tuple[int, str]]] = {}
    for index in sorted(group_rows):
        row = group_rows[index]
        parent = parent_of("group", index, row, set(groups))
        groups[index] = {"type": "group", "match": row.get("match", "all"), "items": []}
        children.setdefault(parent, []).append((index, "group"))
    conditions: dict[int, dict[str, Any]] = {}
    for index in sorted(condition_rows):
        row = condition_rows[index]
        parent = parent_of("condition", index, row, set(groups))
        condition = condition_data(row)
        if condition is not None:
            conditions[index] = condition
            children.setdefault(parent, []).append((index, "condition"))

    def items_of(parent: int | None) -> list[dict[str, Any]]:
        items = []
        for index, kind in sorted(children.get(parent, [])):
            if kind == "condition":
                items.append(conditions[index])
                continue
            group = groups[index]
            group["items"] = items_of(index)
            if group["items"]:
                items.append(group)
        return items

    return {"type": "group", "match": flat.get("match", "all"), "items": items_of(None)}


def definition_from_form(form: FormMultiDict) -> dict[str, Any]:
    """Build definition data from the form; ``parse_definition`` checks it.

    Raises FieldError for a number field that contains no number, and for
    a condition or group that names no group of the form.
    """
    flat = {key: str(value) for key, value in form.items()}
    trigger: dict[str, Any] = {"kind": flat.get("trigger.kind", "")}
    for name in TEXT_TRIGGER_FIELDS:
        value = flat.get(f"trigger.{name}", "").strip()
        if value:
            trigger[name] = value
    for name in INT_TRIGGER_FIELDS:
        number = whole_number(f"trigger.{name}", flat.get(f"trigger.{name}", ""))
        if number is not None:
            trigger[name] = number
    if trigger["kind"] == "scheduled":
        schedule: dict[str, Any] = {"every": flat.get("trigger.every", "daily")}
        for name in SCHEDULE_FIELDS:
            number = whole_number(f"trigger.{name}", flat.get(f"trigger.{name}", ""))
            schedule[name] = number or 0
        trigger["schedule"] = schedule

    actions: list[dict[str, Any]] = []
    for row in rows(flat, "action"):
        kind = row.get("kind", "").strip()
        if kind:
            actions.append(action_data(kind, row, len(actions)))

    return {
        "trigger": trigger,
        "conditions": conditions_from_form(flat),
        "actions": actions,
    }


def action_data(kind: str, row: dict[str, str], position: int) -> dict[str, Any]:
    """Build one action from its form row, reading only the fields of its
    kind, so that fields left over from another kind are ignored.

    ``position`` counts the actions read so far. A whole-number field that
    contains no number is rejected under its definition path.
    """
    action: dict[str, Any] = {"kind": kind}
    for name in ACTION_FIELDS.get(kind, ()):
        raw = row.get(name, "")
        if name == "email":
            action[name] = raw == "on"
        elif name in INT_ACTION_FIELDS:
            number = whole_number(f"actions.{position}.{name}", raw)
            if number is not None:
                action[name] = number
        elif raw.strip():
            action[name] = raw
    return action


def form_items(group: Group, parent: int | None, counter: list[int]) -> list[Any]:
    """Number a group's items in page order, as the builder's rows.

    Returns dicts with ``type`` ("condition" or "group"), ``index`` and
    ``parent``; groups also carry ``match`` and their own ``items``.
    """
    items: list[Any] = []
    for item in group.items:
        index = counter[0]
        counter[0] += 1
        if isinstance(item, Condition):
            value = item.value
            if isinstance(value, list):
                value = ", ".join(value)
            items.append(
                {
                    "type": "condition",
                    "index": index,
                    "parent": parent,
                    "field": item.field,
                    "op": item.op,
                    "value": "" if value is None else value,
                }
            )
            continue
        items.append(
            {
                "type": "group",
                "index": index,
                "parent": parent,
                "match": item.match,
                "items": form_items(item, index, counter),
            }
        )
    return items


def form_values(definition: RuleDefinition) -> dict[str, Any]:
    """Return what the builder shows for a stored definition.

    ``conditions`` is the tree of the top-level group's items (see
    ``form_items``), which the builder shows nested as it is stored.
    """
    trigger = definition.trigger
    return {
        "trigger": trigger,
        "schedule": trigger.schedule,
        "match": definition.conditions.match,
        "conditions": form_items(definition.conditions, None, [0]),
        "actions": definition.actions,
    }


def typed_values(form: FormMultiDict) -> dict[str, Any]:
    """Return the builder's values as the admin typed them, unparsed.

    The values have the shape of ``form_values`` with every field as the
    posted text, so that a form the parser rejects can be shown again with
    its error and nothing lost. Condition and group rows keep their numbers.
    """
    flat = {key: str(value) for key, value in form.items()}
    trigger = {"kind": flat.get("trigger.kind", "")}
    for name in (*TEXT_TRIGGER_FIELDS, *INT_TRIGGER_FIELDS):
        trigger[name] = flat.get(f"trigger.{name}", "")
    schedule = {"every": flat.get("trigger.every", "")}
    for name in SCHEDULE_FIELDS:
        schedule[name] = flat.get(f"trigger.{name}", "")
    return {
        "trigger": trigger,
        "schedule": schedule,
        "match": flat.get("match", "all"),
        "conditions": typed_items(flat),
        "actions": [
            {name: row.get(name, "") for name in Action.__struct_fields__}
            for row in rows(flat, "action")
        ],
    }


def typed_items(flat: Mapping[str, str]) -> list[dict[str, Any]]:
    """Return the condition and group rows as typed, as the tree of
    ``form_items``.

    A row whose group is not an earlier group of the form is shown at the
    top level, where the parser's error about it points the admin to it. So
    is a row under more than ``MAX_NESTING`` groups, which bounds how deep
    the page nests.
    """
    condition_rows = numbered_rows(flat, "condition")
    group_rows = numbered_rows(flat, "group")
    top: list[dict[str, Any]] = []
    groups: dict[int, dict[str, Any]] = {}
    depths: dict[int, int] = {}
    for index in sorted(condition_rows.keys() | group_rows.keys()):
        row = group_rows.get(index) or condition_rows[index]
        raw_parent = row.get("group", "").strip()
        parent = int(raw_parent) if raw_parent.isdigit() else None
        if parent not in groups or depths[parent] >= MAX_NESTING:
            parent = None
        item: dict[str, Any] = {"index": index, "parent": parent}
        if index in group_rows:
            item.update(type="group", match=row.get("match", "all"), items=[])
            groups[index] = item
            depths[index] = 0 if parent is None else depths[parent] + 1
        else:
            item.update(
                type="condition",
                field=row.get("field", ""),
                op=row.get("op", ""),
                value=row.get("value", ""),
            )
        siblings = top if parent is None else groups[parent]["items"]
        siblings.append(item)
    return top


def add_row(values: dict[str, Any], row: str) -> None:
    """Add an empty row to typed values, for a form posted without the
    builder's script.

    ``row`` is "action", "condition" or "group", for a condition or group
    in a group followed by ":" and the group's number. A row for a group
    that is not in the values goes to the top level.
    """
    kind, _, raw_group = row.partition(":")
    if kind == "action":
        values["actions"].append({})
        return
    if kind not in ("condition", "group"):
        return
    numbers = list(item_numbers(values["conditions"]))
    item: dict[str, Any] = {"type": kind, "index": max(numbers, default=-1) + 1}
    if kind == "group":
        item.update(match="all", items=[])
    else:
        item.update(field="", op="", value="")
    group = find_group(values["conditions"], raw_group)
    item["parent"] = None if group is None else group["index"]
    siblings = values["conditions"] if group is None else group["items"]
    siblings.append(item)


def remove_row(values: dict[str, Any], form: FormMultiDict, row: str) -> None:
    """Remove a row from typed values, for a form posted without the
    builder's script.

    ``row`` is "action", "condition" or "group", ":" and the row's number in
    the posted form. A group goes with its items.
    """
    kind, _, raw_number = row.partition(":")
    if not raw_number.isdigit():
        return
    number = int(raw_number)
    if kind == "action":
        flat = {key: str(value) for key, value in form.items()}
        numbers = sorted(numbered_rows(flat, "action"))
        if number in numbers:
            del values["actions"][numbers.index(number)]
    elif kind in ("condition", "group"):
        drop_item(values["conditions"], number)


def drop_item(items: list[dict[str, Any]], number: int) -> bool:
    for position, item in enumerate(items):
        if item["index"] == number:
            del items[position]
            return True
        if item["type"] == "group" and drop_item(item["items"], number):
            return True
    return False


def item_numbers(items: list[dict[str, Any]]) -> Iterator[int]:
    for item in items:
        yield item["index"]
        if item["type"] == "group":
            yield from item_numbers(item["items"])


def find_group(items: list[dict[str, Any]], raw: str) -> dict[str, Any] | None:
    """Return the group numbered ``raw`` in a tree of rows, None if none is."""
    for item in items:
        if item["type"] != "group":
            continue
        if str(item["index"]) == raw:
            return item
        found = find_group(item["items"], raw)
        if found is not None:
            return found
    return None
