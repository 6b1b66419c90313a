"""Reading htmx and HTML form posts."""

from __future__ import annotations

from typing import Annotated, Any

from litestar.enums import RequestEncodingType
from litestar.params import Body

from app.merge import Edit

FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]

BASE_PREFIX = "base_"


def form_edits(
    data: dict[str, Any], editable: tuple[str, ...], parse: Any
) -> dict[str, Edit]:
    """Pair each submitted field with its ``base_<field>`` copy, both parsed.

    A form renders every editable field twice: the input, and a hidden copy
    of the value it started from. Fields missing from the post are left out.
    """
    edits = {}
    for name in editable:
        if name not in data:
            continue
        base_raw = data.get(BASE_PREFIX + name)
        edits[name] = Edit(
            base=parse(name, base_raw) if base_raw is not None else None,
            new=parse(name, data[name]),
        )
    return edits
