"""Encrypted columns: the column type, the process's key ring, row helpers.

A table declares a sensitive column as ``EncryptedText``, and administrators
may mark further ``EncryptableText`` and ``Text`` columns sensitive at run
time (``app.encryption.marked``). Every write path (``merge_edit``, the
create services, the import writer) encrypts with ``encrypt_values``. Reads
of ``EncryptedText`` columns decrypt with ``decrypt_row``, and the database
engine decrypts marked columns in every result, so the database holds only
ciphertext while services and templates see plaintext.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from piccolo.columns import Varchar
from piccolo.table import Table

from app.encryption import marked
from app.encryption.keyring import Keyring, is_encrypted

_keyring: Keyring | None = None


class EncryptedText(Varchar):
    """A TEXT column that stores AES-GCM ciphertext of at most ``length`` characters.

    ``length`` limits the plaintext, which forms check, while the column
    itself is TEXT because the ciphertext is longer. Empty strings and NULL
    are stored as they are, so the database shows which records have a value.
    Encrypted columns cannot be searched, sorted or indexed by their content.
    """

    @property
    def column_type(self) -> str:
        return "TEXT"


class EncryptableText(Varchar):
    """A TEXT column of at most ``length`` characters that may be marked sensitive.

    It is TEXT in the database so that ciphertext fits once an administrator
    marks it. Until then it behaves like ``Varchar``.
    """

    @property
    def column_type(self) -> str:
        return "TEXT"


def set_keyring(keyring: Keyring | None) -> None:
    """Set the keys this process encrypts and decrypts with (None: read again)."""
    global _keyring
    _keyring = keyring


def get_keyring() -> Keyring:
    """Return the process's keys, read from the environment on first use."""
    global _keyring
    if _keyring is None:
        from app.config import load_encryption_keys

        data_dir = Path(os.environ.get("CRM_DATA_DIR", ".data"))
        _keyring = load_encryption_keys(os.environ, data_dir)
    return _keyring


def encrypted_columns(table: type[Table]) -> list[str]:
    """Return the database names of the table's encrypted columns.

    These are its ``EncryptedText`` columns and the columns marked sensitive
    whose new values are encrypted, as this process last read them.
    """
    fixed = [
        column._meta.db_column_name
        for column in table._meta.columns
        if isinstance(column, EncryptedText)
    ]
    return fixed + marked.encrypting_columns(table._meta.tablename)


def context(table: type[Table], column: str) -> str:
    return f"{table._meta.tablename}.{column}"


def encrypt_value(table: type[Table], column: str, value: str | None) -> str | None:
    if not value:
        return value
    return get_keyring().encrypt(value, context(table, column))


def decrypt_value(table: type[Table], column: str, value: str | None) -> str | None:
    """Decrypt a stored value. Plaintext from before encryption passes through.

    Raises ``DecryptionError`` for a value that no configured key decrypts.
    """
    if not value or not is_encrypted(value):
        return value
    return get_keyring().decrypt(value, context(table, column))


def encrypt_values(table: type[Table], values: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``values`` (by column name) with sensitive values encrypted."""
    encrypted = dict(values)
    for column in encrypted_columns(table):
        if column in encrypted:
            encrypted[column] = encrypt_value(table, column, encrypted[column])
    return encrypted


def decrypt_row(
    table: type[Table], row: dict[str, Any], aliases: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Decrypt, in place, the row's values of the table's encrypted columns.

    ``aliases`` maps a column to the key it has in the row when a query
    renamed it. Keys missing from the row are skipped. Returns ``row``.
    """
    for column in encrypted_columns(table):
        key = (aliases or {}).get(column, column)
        if key in row:
            row[key] = decrypt_value(table, column, row[key])
    return row
