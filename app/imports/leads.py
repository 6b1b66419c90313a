"""Import the X Education lead-scoring CSV ("Leads.csv") into closed leads.

Each row is one lead with a known outcome: "Converted" 1 becomes status
converted, 0 unqualified, so the predictive model can learn from them. The
file has no names or emails, so a lead is named after its "Lead Number".
"Lead Source" becomes the lead's source and every other column an answer,
where the web form's placeholder "Select" means no answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from app.imports.fields import RowValues, key_limit, limit
from app.imports.runner import (
    Batch,
    ImportRun,
    SourceFiles,
    csv_step,
    describe_formats,
    recognise_csv,
)
from app.imports.writer import upsert
from app.leads.tables import Lead

SOURCE = "leads"
SUFFIXES = (".csv",)
FORMATS = {
    "leads": ("Prospect ID", "Lead Number", "Lead Source", "Converted"),
}
# Columns that identify the row or give its outcome rather than describe the lead.
NOT_ANSWERS = frozenset({"Prospect ID", "Lead Number", "Converted", "Lead Source"})
# The value the source's web form stored when a drop-down was left alone.
NO_ANSWER = "Select"
KEY_LENGTH = key_limit(f"{SOURCE}:")


def recognise(paths: list[Path]) -> SourceFiles:
    return recognise_csv(paths, FORMATS)


def describe() -> str:
    return describe_formats(FORMATS)


def answer(raw: str | None) -> str | None:
    text = (raw or "").strip()
    return None if text in ("", NO_ANSWER) else text


def row_answers(values: Mapping[str, str]) -> dict[str, str]:
    """Return the answers of one CSV row: every descriptive column with a value."""
    answers = {}
    for column, raw in values.items():
        if column and column not in NOT_ANSWERS:
            text = answer(raw)
            if text is not None:
                answers[column] = text
    return answers


def row_lead(values: Mapping[str, str]) -> dict[str, Any]:
    """Return the lead fields one CSV row gives, as the model reads leads.

    The bench builds its records from this too, so it measures the model on
    exactly what an import stores.
    """
    return {
        "source": answer(values.get("Lead Source")) or "",
        "answers": row_answers(values),
    }


async def import_files(files: SourceFiles, run: ImportRun) -> None:
    for path in files.paths("leads"):
        await import_leads(path, run)


async def import_leads(path: Path, run: ImportRun) -> None:
    now = dt.datetime.now(dt.UTC)

    def prepare(fields: RowValues) -> dict[str, Any]:
        prospect = fields.text("Prospect ID", required=True, max_length=KEY_LENGTH)
        number = fields.text("Lead Number", max_length=limit(Lead.name) - 5)
        converted = fields.raw("Converted").strip()
        if converted not in ("0", "1"):
            fields.fail("Converted", "must be 0 or 1", converted)
        source = fields.text("Lead Source", max_length=limit(Lead.source))
        values = {name: fields.raw(name) for name in fields.values}
        return {
            "external_key": f"{SOURCE}:{prospect}",
            "name": f"Lead {number or prospect}",
            "source": "" if source == NO_ANSWER else source,
            "status": "converted" if converted == "1" else "unqualified",
            "answers": msgspec.json.encode(row_answers(values)).decode(),
            "closed_at": now,
        }

    async def write(batch: Batch) -> None:
        rows = [record for _, record in batch.accepted()]
        written = await upsert(
            Lead,
            rows,
            # A lead closed earlier keeps the time it closed.
            update={"closed_at": "coalesce(t.closed_at, EXCLUDED.closed_at)"},
        )
        batch.count(Lead, written)

    await run.run(
        csv_step(
            path,
            prepare,
            write,
            key_column="Prospect ID",
        )
    )
