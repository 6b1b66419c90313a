"""Rule placeholders: the save check and the renderer accept the same texts."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import FieldError
from app.workflows import placeholders
from app.workflows.records import RECORD_TYPES

TICKET = RECORD_TYPES["ticket"]
VALUES: dict[str, dict[str, Any]] = {
    "record": {"subject": "Printer jam", "priority": "high", "team": None},
    "details": {"metric": "first_response"},
    "rule": {"name": "Escalate"},
}

# Text, trigger, and the rendered text (None where the text is rejected).
CASES = [
    ("No placeholders", "created", "No placeholders"),
    ("", "created", ""),
    ("{record.subject} is {record.priority}", "created", "Printer jam is high"),
    ("Team: {record.team}.", "created", "Team: ."),
    ("{rule.name}: {details.metric}", "sla.warning", "Escalate: first_response"),
    ("{details.metric}", "created", None),
    ("{{ record.subject }}", "created", None),
    ("{{record.subject}}", "created", None),
    ("{record.subject", "created", None),
    ("record.subject}", "created", None),
    ("{record.missing}", "created", None),
    ("{Record.subject}", "created", None),
    ("{rule.id}", "created", None),
    ("{subject}", "created", None),
    ("{}", "created", None),
    ("{record.}", "created", None),
    ("{ {record.subject} }", "created", None),
]


@pytest.mark.parametrize(("text", "trigger", "rendered"), CASES)
def test_check_and_render_agree(text: str, trigger: str, rendered: str | None) -> None:
    if rendered is None:
        with pytest.raises(FieldError) as checked:
            placeholders.check("actions.0.body", text, TICKET, trigger)
        with pytest.raises(FieldError) as filled:
            placeholders.render("body", text, TICKET, trigger, VALUES)
        assert checked.value.field == "actions.0.body"
        assert filled.value.field == "body"
        assert checked.value.reason == filled.value.reason
        return
    placeholders.check("actions.0.body", text, TICKET, trigger)
    assert placeholders.render("body", text, TICKET, trigger, VALUES) == rendered


def test_values_inserted_as_plain_text() -> None:
    values = {"record": {"subject": "{record.priority} {{x}}"}}

    rendered = placeholders.render(
        "body", "{record.subject}", TICKET, "created", values
    )

    assert rendered == "{record.priority} {{x}}"


def test_every_trigger_detail_checks() -> None:
    for trigger, keys in placeholders.TRIGGER_DETAILS.items():
        for key in keys:
            placeholders.check("body", "{details." + key + "}", TICKET, trigger)


def test_hidden_field_shows_marker() -> None:
    text = "{record.subject} for {record.team} ({record.priority})"
    values = {"record": {"subject": "Printer jam", "team": 4, "priority": None}}

    rendered = placeholders.render(
        "body", text, TICKET, "created", values, hidden={"team", "priority"}
    )

    assert rendered == f"Printer jam for {placeholders.HIDDEN} ({placeholders.HIDDEN})"


# A record value and its rendering in a subject: each control character or
# line break becomes one space.
HEADER_CASES = [
    ("Evil\r\nBcc: x@example.org", "Re: Evil  Bcc: x@example.org"),
    ("Evil\nBcc", "Re: Evil Bcc"),
    ("Evil\tBcc", "Re: Evil Bcc"),
    ("Evil\x85Bcc", "Re: Evil Bcc"),
    ("Evil\u2028Bcc", "Re: Evil Bcc"),
    ("Plain ü €", "Re: Plain ü €"),
]


@pytest.mark.parametrize(("value", "rendered"), HEADER_CASES)
def test_header_render_replaces_breaks(value: str, rendered: str) -> None:
    values = {"record": {"subject": value}}

    subject = placeholders.render(
        "subject", "Re: {record.subject}", TICKET, "created", values, header=True
    )
    body = placeholders.render("body", "{record.subject}", TICKET, "created", values)

    assert subject == rendered
    assert body == value


@pytest.mark.parametrize("text", ["Line\nbreak", "A\r", "Tab\there", "Sep\u2029"])
def test_check_header_rejects_breaks(text: str) -> None:
    with pytest.raises(FieldError) as raised:
        placeholders.check_header("actions.0.subject", text)

    assert raised.value.field == "actions.0.subject"
    assert raised.value.value == text
    assert "control character" in raised.value.reason


def test_check_header_accepts_one_line() -> None:
    placeholders.check_header("actions.0.subject", "New ticket {record.id}: ü €")
    placeholders.check_header("actions.0.subject", None)
