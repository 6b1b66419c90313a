"""Field error messages end with one full stop, whatever the reason quotes,
and name the items of lists counting from 1."""

from __future__ import annotations

import pytest

from app.email.templates import render_template
from app.errors import FieldError, readable_path


def test_message_adds_full_stop() -> None:
    error = FieldError("name", "x", "must not be empty")

    assert error.message == "Name 'x' must not be empty."


def test_message_keeps_reason_own_full_stop() -> None:
    error = FieldError("file", "a.csv", "is not valid UTF-8. Save it again.")

    assert error.message == "File 'a.csv' is not valid UTF-8. Save it again."


def test_unsafe_template_message_ends_once() -> None:
    with pytest.raises(FieldError) as raised:
        render_template("{{ ''.__class__.__mro__ }}", {})

    message = raised.value.message
    assert message.endswith("unsafe.")
    assert not message.endswith("..")


ITEMS = {"conditions": "Condition", "actions": "Action", "segment": "Segment rule"}


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("conditions.items.0.op", "Condition 1 operator"),
        ("conditions.0.field", "Condition 1 field"),
        ("conditions.items.1.items.0.field", "Condition 2.1 field"),
        ("conditions.1.0.value", "Condition 2.1 value"),
        ("conditions.items.0.value.2", "Condition 1 value 3"),
        ("conditions.match", "Conditions match"),
        ("actions.0.due_in_minutes", "Action 1 due in minutes"),
        ("actions", "Actions"),
        ("segment.items.0.field", "Segment rule 1 field"),
        ("segment.items.2.items.1.op", "Segment rule 3.2 operator"),
        ("segment.items", "Segment items"),
        ("trigger.schedule.minute", "Trigger schedule minute"),
        ("object_type", "Object type"),
    ],
)
def test_readable_path_counts_items_from_one(path: str, label: str) -> None:
    assert readable_path(path, ITEMS) == label
