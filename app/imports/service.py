"""Import files exported by other systems, and tell open boards to reload."""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Awaitable, Callable
from types import ModuleType

from app.events.service import change_set
from app.imports import hubspot, maven, salesforce, tickets
from app.imports.report import ImportFileError, ImportReport
from app.imports.runner import BATCH_SIZE, ImportRun, SourceFiles

logger = logging.getLogger(__name__)

SOURCES: dict[str, ModuleType] = {
    "maven": maven,
    "tickets": tickets,
    "hubspot": hubspot,
    "salesforce": salesforce,
}


async def run_import(
    source: str,
    paths: list[pathlib.Path],
    *,
    user_id: int | None = None,
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
    run = ImportRun(report, batch_size=batch_size, on_progress=on_progress)

    logger.info(
        "import started source=%s files=%s rows_total=%d user_id=%s",
        source,
        report.files,
        report.rows_total,
        user_id,
    )
    started = time.perf_counter()
    await run.progress()
    try:
        await module.import_files(files, run)
    except Exception:
        report.seconds = time.perf_counter() - started
        logger.exception(
            "import failed source=%s files=%s rows_done=%d rows_total=%d "
            "duration=%.2fs",
            source,
            report.files,
            report.rows_done,
            report.rows_total,
            report.seconds,
        )
        # Batches that committed before the failure still changed the boards.
        await notify_boards(report, user_id, raise_errors=False)
        raise

    await notify_boards(report, user_id)
    report.seconds = time.perf_counter() - started
    order = {name: index for index, name in enumerate(report.files)}
    report.errors.sort(key=lambda error: (order.get(error.file, -1), error.row))
    report.warnings.sort(key=lambda error: (order.get(error.file, -1), error.row))

    logger.info(
        "import finished source=%s files=%s rows_total=%d rows_failed=%d "
        "warnings=%d counts=%s duration=%.2fs",
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
            raise ImportFileError(f"{path} does not exist or is not a file or folder")

    files: SourceFiles = module.recognise(named + listed)
    rejected = [path for path in files.unrecognised if path in named]
    if rejected:
        raise ImportFileError(
            f"{rejected[0].name} matches none of the {module.SOURCE} formats, "
            f"expected {module.describe()}"
        )
    if not files.files:
        raise ImportFileError(
            f"no {module.SOURCE} file found in {', '.join(str(p) for p in paths)}, "
            f"expected {module.describe()}"
        )
    return files


async def notify_boards(
    report: ImportReport, actor_id: int | None, *, raise_errors: bool = True
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
            "board reload events failed source=%s pipeline_ids=%s",
            report.source,
            sorted(report.pipeline_ids),
        )
