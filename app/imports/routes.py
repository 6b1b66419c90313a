"""The import page: upload files, then watch the job's progress live."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.response import Redirect, Template

from app.auth.service import CurrentUser
from app.errors import FieldError
from app.imports.jobs import create_job, get_job, recent_jobs
from app.web.forms import RecordId
from app.web.pages import live_context

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

    @get("/")
    async def import_page(self, request: UserRequest) -> Template:
        return Template(
            "imports/index.html",
            context={
                "sources": SOURCES,
                "jobs": await recent_jobs(request.user.id),
                "error": None,
                "section": "import",
            },
        )

    @post("/", request_max_body_size=MAX_UPLOAD_BYTES)
    async def start_import(self, request: UserRequest) -> Redirect | Template:
        form = await request.form()
        source = str(form.get("source", ""))
        uploads = [
            item for item in form.getall("files") if isinstance(item, UploadFile)
        ]
        try:
            if source not in SOURCES:
                raise FieldError(
                    "source", source, f"must be one of {', '.join(SOURCES)}"
                )
            if not uploads or not any(upload.filename for upload in uploads):
                raise FieldError("files", "", "must include at least one file")
            paths = await save_uploads(request.app.state.settings.data_dir, uploads)
        except FieldError as error:
            return Template(
                "imports/index.html",
                context={
                    "sources": SOURCES,
                    "jobs": await recent_jobs(request.user.id),
                    "error": error,
                    "section": "import",
                },
                status_code=422,
            )

        job_id = await create_job(
            source, [path.name for path in paths], request.user.id
        )
        # The folder, not the files: like `crm import` on a folder, a file in
        # no known format (a data dictionary, say) is listed, not fatal.
        await request.app.state.arq.enqueue_job(
            "import_files", job_id, source, [str(paths[0].parent)]
        )
        return Redirect(f"/import/{job_id}")

    @get("/{job_id:int}")
    async def job_page(self, request: UserRequest, job_id: RecordId) -> Template:
        live = await live_context([f"import:{job_id}"])
        job = await get_job(job_id, user_id=request.user.id)
        return Template(
            "imports/job.html",
            context={
                "job": job,
                "section": "import",
                **live,
            },
        )


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
