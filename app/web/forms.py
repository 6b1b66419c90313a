"""Reading htmx and HTML form posts."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from litestar.enums import RequestEncodingType
from litestar.params import Body, PathParameter
from litestar.response import Template

from app.access.permissions import Access
from app.access.scopes import check_writable, redact, require_record, writable
from app.errors import FieldError
from app.fields import MAX_ID
from app.merge import Conflict, Edit, MergeResult, changed_values

FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
# The id of a record in a path; larger numbers cannot be PostgreSQL ids.
RecordId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]

logger = logging.getLogger(__name__)

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
    ``saved`` is True when the edit applied some field, which beside
    conflicts means that only the other fields were saved.
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
        "others_saved": saved and bool(conflicts),
    }


@dataclass(frozen=True)
class EditForm:
    """The saving and re-rendering of one kind of record's edit form.

    ``update`` is the area's service (it merges and records the event),
    ``load`` reads the record as the form shows it, and ``context`` builds
    the form's template context from a record, the viewer's access and
    ``edit_form_state``'s keyword arguments.
    """

    record_type: str
    template: str
    editable: tuple[str, ...]
    parse: Callable[[str, str | None], Any]
    update: Callable[[int, dict[str, Edit], int | None], Awaitable[MergeResult]]
    load: Callable[[int], Awaitable[dict[str, Any]]]
    context: Callable[..., Awaitable[dict[str, Any]]]
    # Checks the changed values against the viewer's access, given the
    # record's id. It raises FieldError to reject the edit.
    check: Callable[[Access, dict[str, Any], int], Awaitable[None]] | None = None

    async def load_for(self, record_id: int, access: Access, action: str) -> Any:
        """Load the record, raising NotFound outside the read scope and 403
        when ``action`` is not allowed on it."""
        record = await self.load(record_id)
        require_record(access, self.record_type, action, record)
        return redact(access, self.record_type, record)

    async def render(self, record_id: int, access: Access) -> Template:
        """Render the record's edit form, raising as ``load_for`` does when the
        viewer may not edit the record."""
        record = await self.load_for(record_id, access, "edit")
        return Template(
            self.template, context={"form": await self.context(record, access)}
        )

    async def save(
        self, record_id: int, data: dict[str, Any], actor_id: int, access: Access
    ) -> Template:
        """Apply a posted form and return the form with its conflicts or its error.

        A posted field that is hidden from or read-only for the viewer
        rejects the whole edit with 422, naming the field.
        """
        await self.load_for(record_id, access, "edit")
        try:
            submitted = [
                name
                for name in self.editable
                if name in data or BASE_PREFIX + name in data
            ]
            check_writable(access, self.record_type, submitted)
            edits = form_edits(data, self.editable, self.parse)
            if self.check is not None:
                await self.check(access, changed_values(edits), record_id)
            result = await self.update(record_id, edits, actor_id)
        except FieldError as error:
            logger.info(
                "%s edit rejected %s_id=%s user_id=%s field=%s",
                self.record_type,
                self.record_type,
                record_id,
                actor_id,
                error.field,
            )
            record = await self.load_for(record_id, access, "read")
            context = await self.context(record, access, typed=data, error=error)
            return Template(self.template, context={"form": context}, status_code=422)

        record = await self.load_for(record_id, access, "read")
        context = await self.context(
            record,
            access,
            typed=data,
            conflicts=result.conflicts,
            saved=bool(result.applied),
        )
        return Template(self.template, context={"form": context})


def form_fields(
    access: Access, record_type: str, fields: tuple[str, ...]
) -> dict[str, Any]:
    """Return which of a form's fields the viewer sees and which they change."""
    return {
        "writable": writable(access, record_type, fields),
        "read_only": tuple(
            name
            for name in fields
            if access.can_see(record_type, name)
            and not access.can_write(record_type, name)
        ),
        "hidden": access.hidden_fields(record_type),
    }
