"""The field rules of export columns."""

from __future__ import annotations

import pytest

from app.access.permissions import OBJECT_TYPES
from app.exports.queries import KINDS


@pytest.mark.parametrize("export", sorted(KINDS))
def test_field_columns_have_their_rule(export: str) -> None:
    kind = KINDS[export]
    fields = OBJECT_TYPES[kind.object_type].fields
    for item in kind.columns:
        if item.name in fields:
            assert item.rule_field == item.name, f"{export}.{item.name}"


@pytest.mark.parametrize("export", sorted(KINDS))
def test_column_rules_name_fields(export: str) -> None:
    kind = KINDS[export]
    fields = OBJECT_TYPES[kind.object_type].fields
    for item in kind.columns:
        if item.rule_field is not None:
            assert item.rule_field in fields, f"{export}.{item.name}"
