"""Attachment files on disk, named by their SHA-256, and who may download them."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.email.parsing import Attachment
from app.email.tables import EmailAttachment

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kept:
    """The outcome for one attachment of a message: kept, or dropped with the reason."""

    attachment: Attachment
    stored: bool
    reason: str = ""


def content_path(directory: Path, sha256: str) -> Path:
    return directory / sha256[:2] / sha256


def write_content(directory: Path, attachment: Attachment) -> str:
    """Write an attachment's bytes once per content and return their SHA-256.

    The file is written to a temporary name and renamed, so a reader never
    sees half a file. Identical content is stored once.
    """
    digest = attachment.sha256
    path = content_path(directory, digest)
    if path.exists():
        return digest
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(attachment.content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return digest


def choose_kept(
    attachments: list[Attachment], max_file: int, max_total: int
) -> list[Kept]:
    """Decide which attachments fit the limits, in message order."""
    kept: list[Kept] = []
    total = 0
    for attachment in attachments:
        size = len(attachment.content)
        if size > max_file:
            reason = f"larger than the {format_size(max_file)} limit per file"
            kept.append(Kept(attachment, False, reason))
        elif total + size > max_total:
            reason = f"over the {format_size(max_total)} limit per message"
            kept.append(Kept(attachment, False, reason))
        else:
            total += size
            kept.append(Kept(attachment, True))
    return kept


def format_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"


async def get_attachment(attachment_id: int) -> dict[str, Any] | None:
    rows = await EmailAttachment.raw(
        "SELECT id, ticket, filename, content_type, size, sha256, stored "
        "FROM email_attachment WHERE id = {}",
        attachment_id,
    )
    return rows[0] if rows else None
