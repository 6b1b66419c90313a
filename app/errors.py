"""Errors the services raise, each naming the field and the value at fault."""

from __future__ import annotations

from typing import Any


class FieldError(ValueError):
    """A submitted value is invalid.

    ``field`` is the value's path for programs (``actions.0.subject``), and
    ``label``, when set, is how ``message`` names it for people ("Action 1
    subject").
    """

    def __init__(
        self, field: str, value: Any, reason: str, label: str | None = None
    ) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.label = label
        super().__init__(f"{field}: {value!r} {reason}")

    @property
    def message(self) -> str:
        shown = "" if self.value in (None, "") else f" {self.value!r}"
        reason = self.reason.rstrip()
        # A reason may quote a library's sentence, which ends in its own stop.
        end = "" if reason.endswith((".", "!", "?")) else "."
        label = self.label or self.field.replace("_", " ").capitalize()
        return f"{label}{shown} {reason}{end}"


def field_error_status(method: str) -> int:
    """Return the HTTP status of a FieldError raised for a request.

    A GET or HEAD carries its input in the URL only, so an invalid value
    there makes a malformed request (400). An invalid submitted form or body
    is unprocessable content (422).
    """
    return 400 if method in ("GET", "HEAD") else 422


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


class VersionMismatch(Exception):
    """The record is no longer at the version a write was based on."""

    def __init__(
        self, record_type: str, record_id: int, expected: int, current: int
    ) -> None:
        self.record_type = record_type
        self.record_id = record_id
        self.expected = expected
        self.current = current
        super().__init__(
            f"{record_type} {record_id} is at version {current}, not {expected}"
        )
