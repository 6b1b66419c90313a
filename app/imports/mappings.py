"""Saved column mappings, offered again when a file with the same headers comes."""

from __future__ import annotations

import json
import logging
from typing import Any

from app import fields
from app.errors import FieldError
from app.events.service import change_set
from app.imports.tables import ImportMapping
from app.imports.targets import TARGET_LABELS, header_key

logger = logging.getLogger(__name__)

SCOPES = ("user", "organisation")
NAME_LENGTH = 120


async def save_mapping(
    user_id: int,
    name: str,
    target: str,
    headers: list[str],
    mapping: dict[str, str],
    scope: str = "user",
) -> int:
    """Save ``mapping`` under ``name``, for the user or for everyone.

    Saving a name the user (or, for "organisation", everyone) already has
    replaces that mapping. Returns the mapping's id.
    """
    name = " ".join(name.split())
    name = fields.text("mapping_name", name, required=True, max_length=NAME_LENGTH)
    if scope not in SCOPES:
        raise FieldError("mapping_scope", scope, f"must be one of {', '.join(SCOPES)}")
    if target not in TARGET_LABELS:
        raise FieldError("target", target, f"must be one of {', '.join(TARGET_LABELS)}")
    owner = user_id if scope == "user" else None

    async with change_set(user_id) as changes:
        rows = await ImportMapping.raw(
            "INSERT INTO import_mapping AS m "
            "(name, target, header_key, headers, mapping, owner, created_by) "
            "VALUES ({}, {}, {}, {}::jsonb, {}::jsonb, {}, {}) "
            "ON CONFLICT (coalesce(owner, 0), lower(name)) DO UPDATE SET "
            "name = EXCLUDED.name, target = EXCLUDED.target, "
            "header_key = EXCLUDED.header_key, headers = EXCLUDED.headers, "
            "mapping = EXCLUDED.mapping, updated_at = now() "
            "RETURNING m.id, (m.xmax = 0) AS inserted",
            name,
            target,
            header_key(headers),
            json_text(headers),
            json_text(mapping),
            owner,
            user_id,
        )
        mapping_id = rows[0]["id"]
        changes.add(
            "import_mapping.saved",
            "import_mapping",
            mapping_id,
            [],
            {"name": [None, name], "target": [None, target], "scope": [None, scope]},
        )
    logger.info(
        "import mapping saved mapping_id=%s user_id=%s scope=%s target=%s",
        mapping_id,
        user_id,
        scope,
        target,
    )
    return mapping_id


async def mappings_for(user_id: int, headers: list[str]) -> list[dict[str, Any]]:
    """Return the user's and the shared mappings saved for this set of headers, the
    user's own first, most recent first."""
    rows = await ImportMapping.raw(
        "SELECT id, name, target, mapping, owner, updated_at FROM import_mapping "
        "WHERE header_key = {} AND (owner = {} OR owner IS NULL) "
        "ORDER BY owner IS NULL, updated_at DESC, id DESC LIMIT 50",
        header_key(headers),
        user_id,
    )
    return [{**row, "mapping": json.loads(row["mapping"])} for row in rows]


async def get_mapping(mapping_id: int, user_id: int) -> dict[str, Any] | None:
    """Return a mapping the user may use (their own or a shared one), or None."""
    return (
        await ImportMapping.select()
        .where(ImportMapping.id == mapping_id)
        .where((ImportMapping.owner == user_id) | (ImportMapping.owner.is_null()))
        .output(load_json=True)
        .first()
    )


def json_text(value: Any) -> str:
    return json.dumps(value)
