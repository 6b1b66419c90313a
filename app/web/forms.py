"""Reading htmx and HTML form posts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from litestar.enums import RequestEncodingType
from litestar.params import Body, PathParameter

from app.errors import FieldError
from app.fields import MAX_ID
from app.merge import Conflict, Edit

FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
# The id of a record in a path; larger numbers cannot be PostgreSQL ids.
RecordId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]

BASE_PREFIX = "base_"


def form_edits(
    data: dict[str, Any], editable: tuple[str, ...], parse: Any
) -> dict[str, Edit]:
    """Pair each submitted field with its ``base_<field>`` copy, both parsed.

    A form renders every editable field twice: the input, and a hidden copy
    of the value it started from. Fields missing from the post, and fields
    the user left as they were, are left out: a stored value that today's
    rules would reject does not block edits of the other fields.
    """
    edits = {}
    for name in editable:
        if name not in data:
            continue
        base_raw = data.get(BASE_PREFIX + name)
        if base_raw is not None and str(base_raw).strip() == str(data[name]).strip():
            continue
        edits[name] = Edit(
            base=parse(name, base_raw) if base_raw is not None else None,
            new=parse(name, data[name]),
        )
    return edits


def value_labels(
    choices: dict[str, list[dict[str, Any]]],
) -> Callable[[str, Any], str]:
    """Return a function that shows a field's value the way people know it.

    ``choices`` maps a reference field to its options (``id`` and ``name``),
    so a conflict reads "Engaging" or "Dana Reyes" rather than an id.
    """
    names = {
        field: {str(option["id"]): option["name"] for option in options}
        for field, options in choices.items()
    }

    def describe(field: str, value: Any) -> str:
        if value is None or value == "":
            return "(empty)"
        if field in names:
            return names[field].get(str(value), str(value))
        if isinstance(value, str) and "_" in value and value.islower():
            return value.replace("_", " ").capitalize()
        return str(value)

    return describe


def edit_form_state(
    record: dict[str, Any],
    editable: tuple[str, ...],
    typed: dict[str, Any] | None = None,
    conflicts: list[Conflict] | None = None,
    error: FieldError | None = None,
    saved: bool = False,
) -> dict[str, Any]:
    """Build an edit form's state: stored values as base, typed ones kept.

    After a conflict or an invalid value the form shows what the user typed
    in the fields that were not saved, so nothing they wrote is lost, while
    its base copies move to the stored values: saving again keeps theirs.
    """
    conflicts = conflicts or []
    base = {name: record[name] for name in editable}
    shown = dict(base)
    unsaved = set(editable) if error else {conflict.field for conflict in conflicts}
    for name in unsaved:
        if typed is not None and name in typed:
            shown[name] = typed[name]
    return {
        "base": base,
        "inputs": shown,
        "conflicts": conflicts,
        "error": error,
        "saved": saved and not conflicts,
    }
