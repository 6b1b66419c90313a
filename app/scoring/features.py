"""The fields of a lead that the predictive model reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SOURCE_FIELD = "Lead Source"


def lead_features(lead: Mapping[str, Any]) -> dict[str, str | None]:
    """Return the model's record of a lead: its source and its answers.

    Name, email and company identify a person rather than describe them, so
    they stay out. An empty answer counts as no answer.
    """
    record: dict[str, str | None] = {SOURCE_FIELD: lead.get("source") or None}
    for question, answer in (lead.get("answers") or {}).items():
        text = "" if answer is None else str(answer).strip()
        record[str(question)] = text or None
    return record
