"""Checks of rule definitions that need no database."""

from __future__ import annotations

import pytest

from app.errors import FieldError
from app.workflows.schema import SCORED_TYPES, has_score, parse_definition


def rescore_rule() -> dict[str, object]:
    return {"trigger": {"kind": "created"}, "actions": [{"kind": "rescore"}]}


@pytest.mark.parametrize("object_type", ["ticket", "deal", "contact", "account"])
def test_rescore_rejected_without_score(object_type: str) -> None:
    with pytest.raises(FieldError) as raised:
        parse_definition(object_type, rescore_rule())

    assert raised.value.field == "actions.0.kind"
    assert raised.value.value == "rescore"
    assert "score" in raised.value.reason


def test_rescore_accepted_for_leads() -> None:
    definition = parse_definition("lead", rescore_rule())

    assert [action.kind for action in definition.actions] == ["rescore"]


def test_scored_types_listed_once() -> None:
    assert SCORED_TYPES == ("lead",)
    assert has_score("lead")
    assert not has_score("ticket")
