"""Checking, when a rule is saved, that its values suit their fields.

A condition whose value cannot be compared with its field is false on every
record. Examples are a word for an amount, a date that does not parse, or a
stage name where the field contains a stage id. A trigger narrowed to a
stage that does not exist never fires. Saving rejects both, naming the
condition or trigger and the value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from piccolo.columns import (
    Boolean,
    Column,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    Serial,
    Timestamptz,
)
from piccolo.table import Table

from app.errors import FieldError
from app.workflows.conditions import Mismatch, coerce, is_empty
from app.workflows.records import RecordType
from app.workflows.schema import Condition, Group, RuleDefinition, Trigger

# Operators whose value is compared with the field's value.
COMPARED = ("equals", "not_equals", "greater", "less", "in", "changed_to")
ORDERED = ("greater", "less")
TEXT_ONLY = ("contains", "starts_with")
# A value of each column type, for ``coerce`` to convert a condition's text.
SAMPLES: dict[type[Column], Any] = {
    Boolean: True,
    Integer: Decimal(0),
    Serial: Decimal(0),
    Numeric: Decimal(0),
    Date: dt.date(2000, 1, 1),
    Timestamptz: dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
}
KIND_WORDS = {
    Boolean: "true or false",
    Integer: "a finite number",
    Serial: "a finite number",
    Numeric: "a finite number",
    Date: "a date (YYYY-MM-DD)",
    Timestamptz: "a date and time (ISO 8601, such as 2027-01-04T09:00:00+00:00)",
}


@dataclass(frozen=True)
class Reference:
    """An id a rule names, to be looked up in ``table`` at save."""

    path: str
    table: type[Table]
    id: int


def column_of(record_type: RecordType, name: str | None) -> Column | None:
    """Return the table column behind the field ``name``, or None for a
    derived field, the tags, an actor field or a trigger detail."""
    if not name or name == "tags" or name not in record_type.readable:
        return None
    columns = record_type.table._meta.columns
    return next((c for c in columns if c._meta.db_column_name == name), None)


def check_value(
    column: Column, field: str, op: str, value: Any, path: str
) -> list[Reference]:
    """Raise FieldError when ``value`` cannot be compared with ``column``;
    return the ids it names when the column refers to another table."""
    if isinstance(column, ForeignKey):
        target = column._foreign_key_meta.resolved_references
        if op in ORDERED or op in TEXT_ONLY:
            raise FieldError(f"{path}.op", op, f"does not apply to {field}, an id")
        references = []
        for option in options_of(op, value):
            text = str(option).strip()
            if not text.isdigit():
                raise FieldError(
                    f"{path}.value",
                    option,
                    f"is not a {target._meta.tablename.replace('_', ' ')} id "
                    f"({field} holds ids)",
                )
            references.append(Reference(f"{path}.value", target, int(text)))
        return references
    sample_type = next((kind for kind in SAMPLES if isinstance(column, kind)), None)
    if sample_type is None:
        # Text: every value compares, but only as text.
        if op in ORDERED:
            raise FieldError(
                f"{path}.op", op, f"applies to numbers and dates, not {field}"
            )
        return []
    if op in TEXT_ONLY:
        raise FieldError(
            f"{path}.op",
            op,
            f"applies to text, and {field} is {KIND_WORDS[sample_type]}",
        )
    for option in options_of(op, value):
        try:
            coerce(option, SAMPLES[sample_type])
        except Mismatch:
            raise FieldError(
                f"{path}.value", option, f"is not {KIND_WORDS[sample_type]}"
            ) from None
    return []


def options_of(op: str, value: Any) -> list[Any]:
    """Return the values a condition compares, leaving out empty ones (which
    match an empty field)."""
    if isinstance(value, list):
        options = value
    elif op == "in":
        options = str(value).split(",")
    else:
        options = [value]
    return [
        option for option in options if not is_empty(option) and str(option).strip()
    ]


def check_group_values(
    record_type: RecordType, group: Group, path: str = "conditions"
) -> list[Reference]:
    references = []
    for index, item in enumerate(group.items):
        item_path = f"{path}.{index}"
        if isinstance(item, Group):
            references += check_group_values(record_type, item, item_path)
            continue
        references += check_condition(record_type, item, item_path)
    return references


def check_condition(
    record_type: RecordType, condition: Condition, path: str
) -> list[Reference]:
    column = column_of(record_type, condition.field)
    if column is None or condition.op not in (*COMPARED, *TEXT_ONLY):
        return []
    return check_value(column, condition.field, condition.op, condition.value, path)


def check_trigger_values(record_type: RecordType, trigger: Trigger) -> list[Reference]:
    """Check a field change's from and to values, and the stage or status a
    trigger is narrowed to, with the record type's own parser."""
    references: list[Reference] = []
    if trigger.kind == "field_changed":
        column = column_of(record_type, trigger.field)
        for attribute in ("from_value", "to_value"):
            changed = getattr(trigger, attribute)
            if column is not None and changed:
                references += check_value(
                    column,
                    str(trigger.field),
                    "equals",
                    changed,
                    f"trigger.{attribute}",
                )

    narrowed_by = {
        "stage_entered": "stage",
        "stage_left": "stage",
        "status_changed": "status",
    }
    name = narrowed_by.get(trigger.kind)
    field = record_type.stage_field
    value = getattr(trigger, name) if name else None
    if name is None or field is None or not value:
        return references

    try:
        parsed = record_type.parse(field, value)
    except FieldError as error:
        raise FieldError(f"trigger.{name}", value, error.reason) from None
    column = column_of(record_type, field)
    if isinstance(column, ForeignKey):
        target = column._foreign_key_meta.resolved_references
        references.append(Reference(f"trigger.{name}", target, int(parsed)))
    # The engine compares the stored text with the new value's text.
    setattr(trigger, name, str(parsed))
    return references


def check_values(
    record_type: RecordType, definition: RuleDefinition
) -> list[Reference]:
    """Raise FieldError for a value that does not suit its field.

    Returns the ids the definition names, for ``check_references_exist``.
    """
    return [
        *check_trigger_values(record_type, definition.trigger),
        *check_group_values(record_type, definition.conditions),
    ]


async def check_references_exist(references: list[Reference]) -> None:
    for reference in references:
        table = reference.table
        found = await table.exists().where(table._meta.primary_key == reference.id)
        if not found:
            name = table._meta.tablename.replace("_", " ")
            raise FieldError(
                reference.path, reference.id, f"is not the id of any {name}"
            )
