"""Errors the services raise, each naming the field and the value at fault."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Keys of submitted structures that read better as whole words.
KEY_WORDS = {"op": "operator"}


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


def readable_path(path: str, item_nouns: Mapping[str, str]) -> str:
    """Name a value by its dotted path the way people count, from 1.

    ``item_nouns`` maps a list in the path to the word for one of its items.
    With ``{"conditions": "Condition"}``, ``conditions.0.op`` becomes
    "Condition 1 operator". A group's ``items`` list continues its parent's
    number, so ``conditions.items.1.items.0.field`` and ``conditions.1.0.field``
    both become "Condition 2.1 field". Other list positions count from 1 too.
    """
    parts = path.split(".")
    words = []
    position = 0
    while position < len(parts):
        name = parts[position]
        position += 1
        numbers = []
        while position < len(parts) and is_list_step(parts, position):
            if parts[position].isdigit():
                numbers.append(str(int(parts[position]) + 1))
            position += 1
        noun = item_nouns.get(name)
        if noun and numbers:
            words.append(f"{noun} {'.'.join(numbers)}")
        else:
            words += [KEY_WORDS.get(name, name), *numbers]
    text = " ".join(words).replace("_", " ")
    return text[:1].upper() + text[1:]


def is_list_step(parts: list[str], position: int) -> bool:
    """Return whether ``parts[position]`` is a list index, or a group's
    ``items`` key that an index follows."""
    part = parts[position]
    if part.isdigit():
        return True
    following = parts[position + 1] if position + 1 < len(parts) else ""
    return part == "items" and following.isdigit()


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
