"""Import one CSV file into one record type, through a mapping of its columns.

The upload folder contains the CSV file and ``mapping.json``, the settings
chosen on the mapping page (see ``MappingSettings``). Like the other
sources, rows are prepared one at a time, then linked to the records they
name and written in batches by the shared runner. The same preparation and
linking give the preview its errors, without writing anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from piccolo.table import Table

from app.accounts.tables import Account
from app.auth.tables import User
from app.contacts.tables import Contact
from app.deals.service import rejected_stage_entries
from app.deals.tables import Deal, Pipeline, Stage
from app.errors import FieldError
from app.imports.csvfiles import CsvReader, count_rows, read_header
from app.imports.fields import RowValues, key_limit
from app.imports.report import ImportFileError, RowError
from app.imports.runner import Batch, ImportRun, SourceFiles, csv_step
from app.imports.targets import (
    IGNORE,
    PRESETS,
    TARGET_LABELS,
    Preset,
    TargetField,
    target_fields,
    validate_mapping,
)
from app.imports.writer import (
    STAGE_ENTERED_ON_CHANGE,
    STATUS_CHANGED_ON_CHANGE,
    contacts_by_email,
    ensure_pipeline,
    upsert,
)
from app.tickets.tables import Ticket

logger = logging.getLogger(__name__)

SOURCE = "mapped"
SUFFIXES = (".csv",)
SETTINGS_FILE = "mapping.json"
PREVIEW_ROWS = 20
TABLES: dict[str, type[Table]] = {
    "deal": Deal,
    "ticket": Ticket,
    "account": Account,
    "contact": Contact,
}
LINK_KINDS = ("account", "user", "contact", "pipeline", "stage")
UNKNOWN_LINK = "no record has this value, so the link is left empty"


@dataclass
class MappingSettings:
    """The choices made on the mapping page for one uploaded file."""

    target: str
    mapping: dict[str, str] = field(default_factory=dict)
    preset: str | None = None
    # The pipeline of deals whose pipeline column is not mapped or empty.
    pipeline_id: int | None = None

    @property
    def preset_rules(self) -> Preset | None:
        return PRESETS.get(self.preset or "")

    @property
    def key_prefix(self) -> str:
        preset = self.preset_rules
        if preset is not None and preset.target == self.target:
            return preset.key_prefix
        return f"csv-{self.target}:"

    def columns(self) -> dict[str, str]:
        """Map each mapped field to the header it comes from."""
        return {name: header for header, name in self.mapping.items() if name}

    def save(self, folder: Path) -> None:
        (folder / SETTINGS_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: Path) -> MappingSettings:
        path = folder / SETTINGS_FILE
        try:
            raw = json.loads(path.read_text())
            return cls(
                target=str(raw["target"]),
                mapping={str(k): str(v) for k, v in dict(raw["mapping"]).items()},
                preset=raw.get("preset") or None,
                pipeline_id=raw.get("pipeline_id"),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ImportFileError(
                f"{path.name} is not a valid column mapping: {error}"
            ) from None


def describe() -> str:
    return f"one CSV file and its column mapping in {SETTINGS_FILE}"


def recognise(paths: list[Path]) -> SourceFiles:
    files = [path for path in paths if path.suffix.lower() in SUFFIXES]
    unrecognised = [path for path in paths if path not in files]
    if not files:
        return SourceFiles(files=[], unrecognised=unrecognised, rows_total=0)
    settings = MappingSettings.load(files[0].parent)
    tagged = [(settings.target, path) for path in files]
    rows_total = sum(count_rows(path) for path in files)
    return SourceFiles(files=tagged, unrecognised=unrecognised, rows_total=rows_total)


class MappedRows:
    """Prepare and link the rows of one file under one mapping."""

    def __init__(self, settings: MappingSettings, header: list[str]) -> None:
        errors = validate_mapping(settings.target, header, settings.mapping)
        if errors:
            raise ImportFileError(
                "the column mapping is invalid: "
                + "; ".join(error.message for error in errors)
            )
        self.settings = settings
        self.target = settings.target
        self.columns = settings.columns()
        self.fields = [
            item for item in target_fields(self.target) if item.name in self.columns
        ]
        self.prefix = settings.key_prefix
        self.key_length = key_limit(self.prefix)
        preset = settings.preset_rules
        self.stages = preset.stages if preset and preset.target == "deal" else ()
        self.default_pipeline = preset.pipeline if preset else None
        # A preview checks deal stages against a preset's pipeline that the
        # run would create.
        self.previewing = False
        self.key_column = (
            preset.key_column if preset and "external_id" not in self.columns else None
        )
        self.date_formats = (
            preset.date_formats if preset and preset.target == self.target else {}
        )

    @property
    def keyed(self) -> bool:
        return "external_id" in self.columns or self.key_column is not None

    def prepare(self, values: RowValues) -> dict[str, Any]:
        """Parse the mapped fields of one row, keeping links as text for ``link``."""
        record: dict[str, Any] = {}
        for item in self.fields:
            column = self.columns[item.name]
            record[item.name] = self.parse(values, item, column)

        external = record.pop("external_id", None)
        if self.key_column is not None:
            external = values.text(
                self.key_column, required=True, max_length=self.key_length
            )
        record["external_key"] = f"{self.prefix}{external}" if external else None
        return record

    def parse(self, values: RowValues, item: TargetField, column: str) -> Any:
        if item.name == "external_id":
            return values.text(column, required=True, max_length=self.key_length)
        if item.kind == "amount":
            return values.amount(column, required=item.required)
        if item.kind == "integer":
            return values.integer(column)
        if item.kind == "date":
            return values.date(
                column, required=item.required, formats=self.date_formats
            )
        if item.kind == "email":
            return values.email(column, required=item.required)
        if item.kind == "choice":
            return parse_choice(values, column, item)
        if item.name == "domain":
            return values.text(column, max_length=item.max_length).lower() or None
        if item.kind == "contact":
            return values.raw(column).lower() or None
        if item.kind in LINK_KINDS:
            return values.text(column, required=item.required) or None
        return values.text(column, required=item.required, max_length=item.max_length)

    async def link(self, batch: Batch) -> list[dict[str, Any]]:
        """Resolve the links of the batch's rows and return the rows to write.

        A link to a record that does not exist is left empty with a warning.
        A deal whose pipeline or stage does not exist is rejected.
        """
        accepted = batch.accepted()
        records = [record for _, record in accepted]
        accounts = await account_ids(values_of(records, "account"))
        users = await user_ids(
            values_of(records, "owner") | values_of(records, "assignee")
        )
        contact_field = "requester" if self.target == "ticket" else "contact"
        contacts = await contacts_by_email(
            values_of(records, contact_field), prefer=self.prefix
        )
        pipelines = await pipeline_stages() if self.target == "deal" else {}
        default_pipeline = await self.pipeline_name(pipelines)

        rows = []
        lines = []
        for line, record in accepted:
            row = {
                name: value
                for name, value in record.items()
                if name not in ("account", "owner", "assignee", contact_field)
                and name not in ("pipeline", "stage")
            }
            if "account" in record:
                row["account"] = self.found(batch, line, "account", record, accounts)
            if contact_field in record:
                row[contact_field] = self.found(
                    batch, line, contact_field, record, contacts
                )
            for name in ("owner", "assignee"):
                if name in record:
                    user = self.found(batch, line, name, record, users)
                    row[name] = user["id"] if user else None
                    if self.target in ("deal", "ticket"):
                        row["team"] = user["team"] if user else None
            if self.target == "deal":
                if not self.place_deal(
                    batch, line, record, row, pipelines, default_pipeline
                ):
                    continue
                if not row.get("name"):
                    row["name"] = deal_name(record)
            if self.target == "ticket":
                row["status_changed_at"] = None
            rows.append(row)
            lines.append(line)
        if self.target == "deal":
            rows = await self.drop_stage_misses(batch, rows, lines)
        return rows

    async def drop_stage_misses(
        self, batch: Batch, rows: list[dict[str, Any]], lines: list[int]
    ) -> list[dict[str, Any]]:
        """Reject the deal rows that would enter a stage without the fields it
        requires, as every other way into a stage does."""
        placed = [index for index, row in enumerate(rows) if row["stage"] is not None]
        rejected = await rejected_stage_entries([rows[index] for index in placed])
        dropped = set()
        for position, error in rejected.items():
            index = placed[position]
            batch.reject(
                lines[index], self.columns["stage"], error.stage_name, error.reason
            )
            dropped.add(index)
        return [row for index, row in enumerate(rows) if index not in dropped]

    def found(
        self,
        batch: Batch,
        line: int,
        name: str,
        record: Mapping[str, Any],
        ids: Mapping[str, Any],
    ) -> Any:
        value = record.get(name)
        if value is None:
            return None
        hit = ids.get(value.casefold())
        if hit is None:
            batch.warn(line, self.columns[name], value, UNKNOWN_LINK)
        return hit

    async def pipeline_name(
        self, pipelines: Mapping[str, dict[str, Any]]
    ) -> str | None:
        """Return the casefolded name of the pipeline for deals whose row names none."""
        if self.target != "deal":
            return None
        if self.settings.pipeline_id is not None:
            for name, pipeline in pipelines.items():
                if pipeline["id"] == self.settings.pipeline_id:
                    return name
        if self.default_pipeline:
            return self.default_pipeline.casefold()
        return next(iter(pipelines), None)

    def place_deal(
        self,
        batch: Batch,
        line: int,
        record: Mapping[str, Any],
        row: dict[str, Any],
        pipelines: Mapping[str, dict[str, Any]],
        default_pipeline: str | None,
    ) -> bool:
        named = record.get("pipeline")
        key = named.casefold() if named else default_pipeline
        stage = record.get("stage") or ""
        pipeline = pipelines.get(key or "")

        if pipeline is None:
            if key and self.stages and self.previewing:
                # The run creates the preset's pipeline before its rows.
                stage_names = {spec.name.casefold(): 0 for spec in self.stages}
                if stage.casefold() not in stage_names:
                    batch.reject(
                        line,
                        self.columns["stage"],
                        stage,
                        "unknown stage, expected one of "
                        + ", ".join(spec.name for spec in self.stages),
                    )
                    return False
                row["pipeline"] = None
                row["stage"] = None
                return True
            column = self.columns.get("pipeline")
            reason = (
                "unknown pipeline"
                if named
                else "no pipeline exists; create one or map a pipeline column"
            )
            batch.reject(line, column, named, reason)
            return False

        stage_id = pipeline["stages"].get(stage.casefold())
        if stage_id is None:
            batch.reject(
                line,
                self.columns["stage"],
                stage,
                f"unknown stage of the pipeline {pipeline['name']}, expected one of "
                + ", ".join(pipeline["stage_names"]),
            )
            return False

        row["pipeline"] = pipeline["id"]
        row["stage"] = stage_id
        row["stage_entered_at"] = None
        batch.pipeline_ids.add(pipeline["id"])
        return True

    async def write(self, batch: Batch) -> None:
        rows = await self.link(batch)
        table = TABLES[self.target]
        update: dict[str, str] = {}
        if self.target == "deal":
            update["stage_entered_at"] = STAGE_ENTERED_ON_CHANGE
        if self.target == "ticket":
            update["status_changed_at"] = STATUS_CHANGED_ON_CHANGE
        written = await upsert(table, rows, update=update)
        batch.count(table, written)
        if self.target == "ticket" and written:
            batch.tickets_changed = True
        if self.target == "deal" and not written:
            batch.pipeline_ids.clear()

    async def ensure_pipelines(self, path: Path, run: ImportRun) -> None:
        """Create the preset's pipelines that the file names and that do not exist."""
        if self.target != "deal" or not self.stages:
            return
        existing = await pipeline_stages()
        names: set[str] = set()
        column = self.columns.get("pipeline")
        if column is not None:
            for _, values in CsvReader(path):
                name = values.get(column, "").strip()
                if name and len(name) <= 200:
                    names.add(name)
        if self.default_pipeline and self.settings.pipeline_id is None:
            names.add(self.default_pipeline)
        missing = sorted(name for name in names if name.casefold() not in existing)
        if not missing:
            return

        async def write() -> None:
            for name in missing:
                await ensure_pipeline(name, self.stages)

        await run.write_once(write)
        logger.info(
            "import created pipelines job_id=%s pipelines=%s", run.job_id, missing
        )


async def import_files(files: SourceFiles, run: ImportRun) -> None:
    for target, path in files.files:
        settings = MappingSettings.load(path.parent)
        if settings.target != target:
            raise ImportFileError(f"{path.name} was recognised as {target}")
        rows = MappedRows(settings, read_header(path))
        await rows.ensure_pipelines(path, run)
        await run.run(
            csv_step(
                path,
                rows.prepare,
                rows.write,
                key="external_key" if rows.keyed else None,
                key_column=rows.columns.get("external_id", rows.key_column),
            )
        )


@dataclass
class PreviewRow:
    line: int
    values: dict[str, str]
    errors: list[RowError]
    warnings: list[RowError]


async def preview(
    path: Path, settings: MappingSettings, limit: int = PREVIEW_ROWS
) -> list[PreviewRow]:
    """Return the first ``limit`` rows as the import would write them, with
    each row's errors and warnings. Reads the database, writes nothing.

    Raises ``ImportFileError`` for an unreadable file or an invalid mapping.
    """
    rows = MappedRows(settings, read_header(path))
    rows.previewing = True
    batch = Batch(path.name)
    reader = CsvReader(path)
    shown: dict[int, dict[str, str]] = {}
    for line, values in reader:
        fields = RowValues(values)
        record = rows.prepare(fields)
        shown[line] = {
            item.name: display(fields.raw(rows.columns[item.name]), record, item)
            for item in rows.fields
        }
        batch.add_line(line)
        for column, value, reason in fields.errors:
            batch.fail(line, column, value, reason)
        if not fields.errors:
            batch.rows.append((line, record))
        if len(shown) >= limit:
            break
    for line, reason in reader.rejected:
        if line <= max(shown, default=0):
            shown.setdefault(line, {})
            batch.fail(line, None, None, reason)

    await rows.link(batch)
    return [
        PreviewRow(
            line=line,
            values=values,
            errors=[error for error in batch.errors if error.row == line],
            warnings=[warning for warning in batch.warnings if warning.row == line],
        )
        for line, values in sorted(shown.items())
    ]


def display(raw: str, record: Mapping[str, Any], item: TargetField) -> str:
    """Format the parsed value of a field, or its text when it did not parse."""
    value = record.get(item.name)
    if value is None or item.name == "external_id":
        return raw
    return str(value)


def parse_choice(values: RowValues, column: str, item: TargetField) -> str | None:
    """Map a choice's value or label, ignoring case, to its stored value.

    An empty field gets the column's default.
    """
    text = values.raw(column)
    if not text:
        return item.default
    folded = {label.casefold(): stored for label, stored in item.choices.items()}
    stored = folded.get(text.casefold())
    if stored is None:
        expected = ", ".join(dict.fromkeys(item.choices.values()))
        values.fail(column, f"unknown value, expected one of {expected}", text)
    return stored


def values_of(records: list[dict[str, Any]], name: str) -> set[str]:
    return {record[name] for record in records if record.get(name)}


async def account_ids(values: set[str]) -> dict[str, int]:
    """Map each casefolded account name or domain to an account id.

    A name match wins over a domain match, then the oldest account.
    """
    if not values:
        return {}
    folded = sorted({value.casefold() for value in values})
    rows = await Account.raw(
        "SELECT id, lower(name) AS name, lower(domain) AS domain FROM account "
        "WHERE lower(name) = ANY({}::text[]) OR lower(domain) = ANY({}::text[]) "
        "ORDER BY id",
        folded,
        folded,
    )
    found: dict[str, int] = {}
    for row in rows:
        found.setdefault(row["name"], row["id"])
    for row in rows:
        if row["domain"]:
            found.setdefault(row["domain"], row["id"])
    return found


async def user_ids(values: set[str]) -> dict[str, dict[str, Any]]:
    """Map each casefolded email or name to ``{"id": ..., "team": ...}``."""
    if not values:
        return {}
    folded = sorted({value.casefold() for value in values})
    rows = await User.raw(
        "SELECT id, team, lower(email) AS email, lower(name) AS name FROM app_user "
        "WHERE lower(email) = ANY({}::text[]) OR lower(name) = ANY({}::text[]) "
        "ORDER BY id",
        folded,
        folded,
    )
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        found.setdefault(row["email"], {"id": row["id"], "team": row["team"]})
    for row in rows:
        found.setdefault(row["name"], {"id": row["id"], "team": row["team"]})
    return found


async def pipeline_stages() -> dict[str, dict[str, Any]]:
    """Map each casefolded pipeline name to its id, name and stages."""
    pipelines = await Pipeline.select(Pipeline.id, Pipeline.name).order_by(
        Pipeline.position, Pipeline.id
    )
    stages = await Stage.select(Stage.id, Stage.pipeline, Stage.name).order_by(
        Stage.position, Stage.id
    )
    found: dict[str, dict[str, Any]] = {}
    for pipeline in pipelines:
        found.setdefault(
            pipeline["name"].casefold(),
            {
                "id": pipeline["id"],
                "name": pipeline["name"],
                "stages": {},
                "stage_names": [],
            },
        )
    by_id = {item["id"]: item for item in found.values()}
    for stage in stages:
        owner = by_id.get(stage["pipeline"])
        if owner is not None:
            owner["stages"].setdefault(stage["name"].casefold(), stage["id"])
            owner["stage_names"].append(stage["name"])
    return found


def deal_name(record: Mapping[str, Any]) -> str:
    """Name a deal whose file has no name: its account and source id."""
    account = record.get("account") or "No account"
    key = (record.get("external_key") or "").rpartition(":")[2]
    return f"{account} \N{EN DASH} {key or 'imported deal'}"[:300]


def check_target(target: str) -> str:
    if target not in TARGET_LABELS:
        raise FieldError("target", target, f"must be one of {', '.join(TARGET_LABELS)}")
    return target


__all__ = ["IGNORE", "MappingSettings", "PreviewRow", "import_files", "preview"]
