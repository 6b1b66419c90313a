"""Errors the services raise, each naming the field and the value at fault."""

from __future__ import annotations

from typing import Any


class FieldError(ValueError):
    """A submitted value is invalid."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}: {value!r} {reason}")

    @property
    def message(self) -> str:
        shown = "" if self.value in (None, "") else f" {self.value!r}"
        return f"{self.field.replace('_', ' ').capitalize()}{shown} {self.reason}."


class NotFound(LookupError):
    """The record does not exist (or is not visible to the user)."""

    def __init__(self, record_type: str, record_id: Any) -> None:
        self.record_type = record_type
        self.record_id = record_id
        super().__init__(f"{record_type} {record_id} not found")


class EditConflict(Exception):
    """Someone else changed the fields this edit was based on."""

    def __init__(self, record_type: str, record_id: int, conflicts: list[Any]) -> None:
        self.record_type = record_type
        self.record_id = record_id
        self.conflicts = conflicts
        names = ", ".join(conflict.field for conflict in conflicts)
        super().__init__(f"{record_type} {record_id} changed meanwhile: {names}")
