"""Apply the schema migrations; running it again is a no-op."""

from __future__ import annotations

import logging

from piccolo.apps.migrations.commands.forwards import run_forwards

logger = logging.getLogger(__name__)


class MigrationFailed(Exception):
    pass


async def migrate() -> None:
    result = await run_forwards(app_name="crm")
    if not result.success:
        raise MigrationFailed(result.message or "migrations failed")
    logger.info("migrations applied")
