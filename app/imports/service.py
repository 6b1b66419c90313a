"""Import files exported by other systems, and tell open boards to reload."""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Awaitable, Callable
from types import ModuleType

from app.events.service import change_set
from app.imports import hubspot, leads, mapped, maven, salesforce, tickets
from app.imports.rejected import store_rejected_rows
from app.imports.report import ImportFileError, ImportReport
from app.imports.runner import BATCH_SIZE, ImportRun, SourceFiles

logger = logging.getLogger(__name__)

SOURCES: dict[str, ModuleType] = {
    "maven": maven,
    "tickets": tickets,
    "hubspot": hubspot,
    "salesforce": salesforce,
    "leads": leads,
    # One CSV file through the columns mapped on the import page.
    "mapped": mapped,
}


async def run_import(
    source: str,
    paths: list[pathlib.Path],
    *,
    user_id: int | None = None,
    job_id: int | None = None,
    on_progress: Callable[[int, int], Awaitable[None]] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import ``paths`` (files, or folders of files) in the format of ``source``.

    Each batch of ``batch_size`` input rows is written in its own transaction,
    so an interrupted import leaves whole batches only. Rows that cannot be
    imported are listed in the report's ``errors`` and the others still go in.
    A batch that the database rejects is rolled back and its rows reported.
    ``on_progress(done, total)`` is awaited at the start and after each batch.
    Re-importing a file updates the records it created, by ``external_key``.
    ``job_id`` is the import job of a web import, for the logs; its rejected
    rows are stored with their original fields (``app.imports.rejected``).

    Raises ``ValueError`` for an unknown source and ``ImportFileError`` (a
    ``ValueError``) for a missing, unreadable or unrecognised file, in both
    cases before anything is written. Must not run inside a transaction.
    """
    module = SOURCES.get(source)
    if module is None:
        raise ValueError(
            f"unknown import source {source!r}, expected one of {', '.join(SOURCES)}"
        )

    files = collect_files(module, paths)
    report = ImportReport(
        source=source,
        files=[path.name for _, path in files.files],
        rows_total=files.rows_total,
        ignored_files=[path.name for path in files.unrecognised],
    )
    run = ImportRun(
        report,
        batch_size=batch_size,
        on_progress=on_progress,
        job_id=job_id,
        user_id=user_id,
    )

    logger.info(
        "import started source=%s files=%s rows_total=%d job_id=%s user_id=%s",
        source,
        report.files,
        report.rows_total,
        job_id,
        user_id,
    )
    started = time.perf_counter()
    await run.progress()
    try:
        await module.import_files(files, run)
    except Exception:
        report.seconds = time.perf_counter() - started
        logger.exception(
            "import failed job_id=%s user_id=%s source=%s files=%s rows_done=%d "
            "rows_total=%d duration=%.2fs",
            job_id,
            user_id,
            source,
            report.files,
            report.rows_done,
            report.rows_total,
            report.seconds,
        )
        # Batches that committed before the failure still changed the boards.
        await notify_boards(report, user_id, job_id, raise_errors=False)
        raise

    await notify_boards(report, user_id, job_id)
    report.seconds = time.perf_counter() - started
    order = {name: index for index, name in enumerate(report.files)}
    report.errors.sort(key=lambda error: (order.get(error.file, -1), error.row))
    report.warnings.sort(key=lambda error: (order.get(error.file, -1), error.row))
    if job_id is not None:
        # Kept for the download of rejected rows, before the worker removes
        # the uploaded files.
        await store_rejected_rows(
            job_id, {path.name: path for _, path in files.files}, report.errors
        )

    logger.info(
        "import finished job_id=%s user_id=%s source=%s files=%s rows_total=%d "
        "rows_failed=%d warnings=%d counts=%s duration=%.2fs",
        job_id,
        user_id,
        source,
        report.files,
        report.rows_total,
        report.rows_failed,
        len(report.warnings),
        {
            table: f"{counts.created} created, {counts.updated} updated"
            for table, counts in report.counts.items()
        },
        report.seconds,
    )
    return report


def upload_folder(data_dir: pathlib.Path, job_id: int) -> pathlib.Path:
    """Return the folder that contains the uploaded files of an import job."""
    return data_dir / "uploads" / f"import-{job_id}"


def collect_files(module: ModuleType, paths: list[pathlib.Path]) -> SourceFiles:
    """Expand folders and tag every file with its format.

    A named file in no known format is an error. Files in a named folder that
    match no format are only listed in the report, so that a folder can also
    hold a data dictionary or a README.
    """
    named: list[pathlib.Path] = []
    listed: list[pathlib.Path] = []
    for path in paths:
        if path.is_dir():
            listed.extend(
                sorted(
                    child
                    for child in path.iterdir()
                    if child.is_file() and child.suffix.lower() in module.SUFFIXES
                )
            )
        elif path.is_file():
            named.append(path)
        else:
            logger.info("import path missing source=%s path=%s", module.SOURCE, path)
            raise ImportFileError(
                f"{path.name} does not exist or is not a file or folder"
            )

    files: SourceFiles = module.recognise(named + listed)
    rejected = [path for path in files.unrecognised if path in named]
    if rejected:
        raise ImportFileError(
            f"{rejected[0].name} matches none of the {module.SOURCE} formats, "
            f"expected {module.describe()}"
        )
    if not files.files:
        # The message reaches the user; only the log names the server's paths.
        logger.info(
            "no import file found source=%s paths=%s",
            module.SOURCE,
            ", ".join(str(path) for path in paths),
        )
        raise ImportFileError(
            f"no {module.SOURCE} file found among {file_names(paths)}, "
            f"expected {module.describe()}"
        )
    return files


def file_names(paths: list[pathlib.Path]) -> str:
    """Name the files given or held in the folders given, without their folders."""
    names = []
    for path in paths:
        if path.is_dir():
            names.extend(sorted(child.name for child in path.iterdir()))
        else:
            names.append(path.name)
    return ", ".join(names) or "no files"


async def notify_boards(
    report: ImportReport,
    actor_id: int | None,
    job_id: int | None = None,
    *,
    raise_errors: bool = True,
) -> None:
    """Record one ``board.reload`` event per board the import changed."""
    try:
        async with change_set(actor_id=actor_id) as changes:
            for pipeline_id in sorted(report.pipeline_ids):
                changes.add(
                    "board.reload", "pipeline", pipeline_id, [f"pipeline:{pipeline_id}"]
                )
            if report.tickets_changed:
                changes.add("board.reload", "ticket_board", 0, ["tickets"])
    except Exception:
        if raise_errors:
            raise
        logger.exception(
            "board reload events failed job_id=%s user_id=%s source=%s pipeline_ids=%s",
            job_id,
            actor_id,
            report.source,
            sorted(report.pipeline_ids),
        )
