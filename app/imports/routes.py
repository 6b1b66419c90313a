"""The import page: upload files, then watch the job's progress live."""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromQuery
from litestar.response import Redirect, Stream, Template
from redis.exceptions import RedisError

from app.access.guards import IMPORT
from app.audit.service import record_export
from app.auth.service import CurrentUser
from app.deals.queries import list_pipelines
from app.errors import FieldError
from app.exports.csvtext import content_disposition
from app.fields import reference
from app.imports.csvfiles import CsvReader, read_header
from app.imports.jobs import create_job, get_job, queue_draft, recent_jobs
from app.imports.mapped import MappingSettings, preview
from app.imports.mappings import SCOPES, get_mapping, mappings_for, save_mapping
from app.imports.rejected import count_rejected_rows, report_header, stream_report
from app.imports.report import ImportFileError
from app.imports.service import upload_folder
from app.imports.targets import (
    IGNORE,
    PRESETS,
    TARGET_LABELS,
    detect_preset,
    guess_mapping,
    preset_mapping,
    target_fields,
    validate_mapping,
)
from app.web.forms import RecordId
from app.web.pages import live_context
from workers.connection import Queue, import_job_id

logger = logging.getLogger(__name__)

UserRequest = Request[CurrentUser, Any, Any]
SOURCES = {
    "maven": "Maven sales opportunities: accounts, products, sales_teams, "
    "sales_pipeline CSVs",
    "tickets": "Support tickets CSV",
    "hubspot": "HubSpot exports (companies, contacts, deals, tickets, activities CSVs)",
    "salesforce": "Salesforce sObject tree JSON or report CSV",
}
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ImportController(Controller):
    path = "/import"

    @get("/", opt={"permission": IMPORT})
    async def import_page(self, request: UserRequest) -> Template:
        return Template(
            "imports/index.html",
            context=await index_context(request.user.id),
        )

    @post("/", request_max_body_size=MAX_UPLOAD_BYTES, opt={"permission": IMPORT})
    async def start_import(self, request: UserRequest) -> Redirect | Template:
        data_dir = request.app.state.settings.data_dir
        form = await request.form()
        source = str(form.get("source", ""))
        uploads = [
            item for item in form.getall("files", []) if isinstance(item, UploadFile)
        ]
        try:
            if source not in SOURCES:
                raise FieldError(
                    "source", source, f"must be one of {', '.join(SOURCES)}"
                )
            if not uploads or not any(upload.filename for upload in uploads):
                raise FieldError("files", "", "must include at least one file")
            paths = await save_uploads(data_dir, uploads)
        except FieldError as error:
            logger.info(
                "import rejected user_id=%s field=%s reason=%s",
                request.user.id,
                error.field,
                error.message,
            )
            return Template(
                "imports/index.html",
                context=await index_context(request.user.id, error=error),
                status_code=422,
            )

        job_id = await create_job(
            source, [path.name for path in paths], request.user.id
        )
        folder = move_uploads(paths[0].parent, upload_folder(data_dir, job_id))
        # The folder, not the files: like `crm import` on a folder, a file in
        # no known format (a data dictionary, say) is listed, not fatal.
        await queue_import(
            request.app.state.arq, job_id, source, folder, request.user.id
        )
        return Redirect(f"/import/{job_id}")

    @get("/{job_id:int}", opt={"permission": IMPORT})
    async def job_page(
        self, request: UserRequest, job_id: RecordId
    ) -> Template | Redirect:
        live = await live_context([f"import:{job_id}"], presence=False)
        job = await get_job(job_id, user_id=request.user.id)
        if job["state"] == "draft":
            return Redirect(f"/import/{job_id}/mapping")
        return Template(
            "imports/job.html",
            context={
                "job": job,
                "section": "import",
                **live,
            },
        )

    @post("/map", request_max_body_size=MAX_UPLOAD_BYTES, opt={"permission": IMPORT})
    async def upload_for_mapping(self, request: UserRequest) -> Redirect | Template:
        """Keep one uploaded CSV file in a draft job, whose columns are mapped next."""
        data_dir = request.app.state.settings.data_dir
        form = await request.form()
        target = str(form.get("target", ""))
        upload = form.get("file")
        try:
            if target not in TARGET_LABELS:
                raise FieldError(
                    "target", target, f"must be one of {', '.join(TARGET_LABELS)}"
                )
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise FieldError("file", "", "must be a CSV file")
            if not upload.filename.lower().endswith(".csv"):
                raise FieldError("file", upload.filename, "must be a .csv file")
            [path] = await save_uploads(data_dir, [upload])
            try:
                headers = read_header(path)
            except ImportFileError as error:
                shutil.rmtree(path.parent, ignore_errors=True)
                raise FieldError(
                    "file", upload.filename, error.reason(upload.filename)
                ) from None
        except FieldError as error:
            logger.info(
                "mapping upload rejected user_id=%s field=%s reason=%s",
                request.user.id,
                error.field,
                error.message,
            )
            return Template(
                "imports/index.html",
                context=await index_context(request.user.id, map_error=error),
                status_code=422,
            )

        # NOTE: a draft that is never started keeps its upload folder, because
        # nothing removes abandoned drafts yet.
        job_id = await create_job("mapped", [path.name], request.user.id, "draft")
        folder = move_uploads(path.parent, upload_folder(data_dir, job_id))
        preset = detect_preset(headers)
        settings = MappingSettings(target=target)
        if preset is not None and preset.target == target:
            settings.preset = preset.name
            settings.mapping = preset_mapping(preset, headers)
        else:
            settings.mapping = guess_mapping(target, headers)
        settings.save(folder)
        return Redirect(f"/import/{job_id}/mapping")

    @get("/{job_id:int}/mapping", opt={"permission": IMPORT})
    async def mapping_page(
        self,
        request: UserRequest,
        job_id: RecordId,
        use: FromQuery[str | None] = None,
        preset: FromQuery[str | None] = None,
    ) -> Template | Redirect:
        draft = await load_draft(request, job_id)
        if draft is None:
            return Redirect(f"/import/{job_id}")
        _, path, headers, settings = draft
        try:
            mapping_id = reference("use", use)
            if mapping_id is not None:
                saved = await get_mapping(mapping_id, request.user.id)
                if saved is None:
                    raise FieldError("use", use, "is not a mapping you can use")
                settings.target = saved["target"]
                settings.mapping = {
                    header: saved["mapping"].get(header, IGNORE) for header in headers
                }
            elif preset:
                rules = PRESETS.get(preset)
                if rules is None:
                    raise FieldError(
                        "preset", preset, f"must be one of {', '.join(PRESETS)}"
                    )
                settings.preset = rules.name
                settings.target = rules.target
                settings.mapping = preset_mapping(rules, headers)
        except FieldError as error:
            logger.info(
                "mapping choice rejected job_id=%s field=%s", job_id, error.field
            )
            # ``use`` and ``preset`` are in the URL, so this is a bad request.
            return await mapping_template(
                request, job_id, path, headers, settings, errors=[error], status=400
            )
        return await mapping_template(request, job_id, path, headers, settings)

    @post("/{job_id:int}/mapping", opt={"permission": IMPORT})
    async def submit_mapping(
        self, request: UserRequest, job_id: RecordId
    ) -> Template | Redirect:
        """Check the mapping, then preview the rows or queue the import."""
        draft = await load_draft(request, job_id)
        if draft is None:
            return Template(
                "imports/not_draft.html",
                context={"job_id": job_id, "section": "import"},
                status_code=409,
            )
        folder, path, headers, settings = draft
        form = await request.form()
        action = str(form.get("action", "preview"))
        errors: list[FieldError] = []
        target = str(form.get("target", settings.target))
        if target != settings.target and target in TARGET_LABELS:
            # The column choices on the page were those of the old type, so
            # the columns are guessed again for the new one and shown.
            settings = MappingSettings(
                target=target, mapping=guess_mapping(target, headers)
            )
            settings.save(folder)
            return await mapping_template(request, job_id, path, headers, settings)
        try:
            settings = settings_from_form(form, headers, settings)
        except FieldError as error:
            errors.append(error)
        if not errors:
            errors = validate_mapping(
                settings.target, headers, settings.mapping, request.user.access
            )
        name = str(form.get("mapping_name", "")).strip()
        if not errors and name:
            try:
                await save_mapping(
                    request.user.id,
                    name,
                    settings.target,
                    headers,
                    settings.mapping,
                    str(form.get("mapping_scope", "user")),
                )
            except FieldError as error:
                errors.append(error)
        if errors:
            logger.info(
                "import mapping rejected job_id=%s user_id=%s fields=%s",
                job_id,
                request.user.id,
                [error.field for error in errors],
            )
            return await mapping_template(
                request, job_id, path, headers, settings, errors=errors, status=422
            )
        settings.save(folder)

        if action != "run":
            try:
                rows = await preview(path, settings)
            except ImportFileError as error:
                return await mapping_template(
                    request,
                    job_id,
                    path,
                    headers,
                    settings,
                    errors=[FieldError("file", path.name, error.reason(path.name))],
                    status=422,
                )
            return await mapping_template(
                request, job_id, path, headers, settings, preview_rows=rows
            )

        if not await queue_draft(job_id, request.user.id):
            return Redirect(f"/import/{job_id}")
        await queue_import(
            request.app.state.arq, job_id, "mapped", folder, request.user.id
        )
        return Redirect(f"/import/{job_id}")

    @get("/{job_id:int}/rejected.csv", opt={"permission": IMPORT})
    async def rejected_rows(
        self, request: UserRequest, job_id: RecordId
    ) -> Stream | Template:
        """Stream the rows the import did not write, with their fields and errors."""
        job = await get_job(job_id, user_id=request.user.id)
        if job["state"] not in ("done", "failed"):
            return Template(
                "imports/not_draft.html",
                context={"job_id": job_id, "section": "import", "unfinished": True},
                status_code=409,
            )
        columns = await report_header(job_id)
        rows = await count_rejected_rows(job_id)
        audit_id = await record_export(
            request.user.id,
            "import_job",
            rows,
            file_format="csv",
            filters={"rows": "rejected"},
            record_id=job_id,
        )
        logger.info(
            "rejected rows downloaded job_id=%s user_id=%s rows=%d audit_id=%s",
            job_id,
            request.user.id,
            rows,
            audit_id,
        )
        return Stream(
            stream_report(job_id, columns),
            media_type="text/csv",  # Litestar adds "; charset=utf-8"
            headers={
                "Content-Disposition": content_disposition(
                    f"import-{job_id}-rejected-rows.csv"
                )
            },
        )


async def index_context(
    user_id: int,
    error: FieldError | None = None,
    map_error: FieldError | None = None,
) -> dict[str, Any]:
    return {
        "sources": SOURCES,
        "targets": TARGET_LABELS,
        "jobs": await recent_jobs(user_id),
        "error": error,
        "map_error": map_error,
        "section": "import",
    }


async def load_draft(
    request: UserRequest, job_id: int
) -> tuple[Path, Path, list[str], MappingSettings] | None:
    """Return the folder, CSV file, headers and settings of the user's draft job, or
    None when the job is no longer a draft. Raises NotFound for a job the
    user did not start."""
    job = await get_job(job_id, user_id=request.user.id)
    if job["state"] != "draft":
        return None
    folder = upload_folder(request.app.state.settings.data_dir, job_id)
    path = folder / job["filenames"][0]
    try:
        headers = read_header(path)
        settings = MappingSettings.load(folder)
    except (ImportFileError, OSError) as error:
        logger.error(
            "draft import unreadable job_id=%s user_id=%s error=%s",
            job_id,
            request.user.id,
            error,
        )
        return None
    return folder, path, headers, settings


def settings_from_form(
    form: Any, headers: list[str], settings: MappingSettings
) -> MappingSettings:
    """Read the target, preset, pipeline and one field per column from the form.

    Columns are sent by position (``column_0``...), because header names may
    hold any character.
    """
    target = str(form.get("target", settings.target))
    if target not in TARGET_LABELS:
        raise FieldError("target", target, f"must be one of {', '.join(TARGET_LABELS)}")
    preset = str(form.get("preset", "")) or None
    if preset is not None and preset not in PRESETS:
        raise FieldError("preset", preset, f"must be one of {', '.join(PRESETS)}")
    pipeline_id = reference("pipeline", str(form.get("pipeline", "")) or None)
    mapping = {
        header: str(form.get(f"column_{index}", IGNORE))
        for index, header in enumerate(headers)
    }
    return MappingSettings(
        target=target, mapping=mapping, preset=preset, pipeline_id=pipeline_id
    )


async def mapping_template(
    request: UserRequest,
    job_id: int,
    path: Path,
    headers: list[str],
    settings: MappingSettings,
    *,
    errors: list[FieldError] | None = None,
    preview_rows: list[Any] | None = None,
    status: int = 200,
) -> Template:
    access = request.user.access
    detected = detect_preset(headers)
    fields = target_fields(settings.target, access)
    return Template(
        "imports/mapping.html",
        context={
            "job_id": job_id,
            "filename": path.name,
            "headers": headers,
            "samples": first_values(path, headers),
            "settings": settings,
            "targets": TARGET_LABELS,
            "fields": fields,
            "labels": {item.name: item.label for item in fields},
            "required": [item.name for item in fields if item.required],
            "presets": PRESETS,
            "detected": detected.name if detected else None,
            "saved": await mappings_for(request.user.id, headers),
            "pipelines": await list_pipelines(),
            "scopes": SCOPES,
            "errors": errors or [],
            "preview": preview_rows,
            "section": "import",
        },
        status_code=status,
    )


def first_values(path: Path, headers: list[str]) -> dict[str, str]:
    """Return the first data row's value of each column, shown beside the header."""
    try:
        for _, values in CsvReader(path):
            return {header: values.get(header, "")[:80] for header in headers}
    except ImportFileError:
        pass
    return {}


async def save_uploads(data_dir: Path, uploads: list[UploadFile]) -> list[Path]:
    """Store uploaded files where the worker can read them."""
    folder = data_dir / "uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    paths: list[Path] = []
    for upload in uploads:
        path = folder / unique_name(upload.filename, {path.name for path in paths})
        path.write_bytes(await upload.read())
        paths.append(path)
    return paths


def move_uploads(folder: Path, target: Path) -> Path:
    """Move the uploads to the job's own folder, where the worker's sweep finds them."""
    if target.exists():
        # Left by a job of an earlier database whose ids started again at 1.
        logger.warning("removing stale upload folder path=%s", target)
        shutil.rmtree(target)
    return folder.rename(target)


async def queue_import(
    queue: Queue, job_id: int, source: str, folder: Path, user_id: int
) -> None:
    """Queue the import job for the worker.

    When Redis fails, the job stays queued in the database and the worker's
    sweep for abandoned jobs queues it later, so the user is still sent to
    the job's page.
    """
    try:
        await queue.enqueue_job(
            "import_files",
            job_id,
            source,
            [str(folder)],
            _job_id=import_job_id(job_id),
        )
    except (RedisError, OSError) as error:
        logger.warning(
            "import not queued, the worker's sweep will queue it "
            "job_id=%s user_id=%s error=%r",
            job_id,
            user_id,
            error,
        )


def unique_name(filename: str | None, taken: set[str]) -> str:
    """Return a safe file name for an upload, not one of ``taken``."""
    name = SAFE_NAME.sub("_", Path(filename or "").name).lstrip(".") or "upload"
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{stem}-{number}{dot}{suffix}"
    return candidate
