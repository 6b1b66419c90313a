"""AES-GCM keys with ids, and the envelope format of encrypted values.

A key list contains ``id:key`` entries separated by commas or whitespace, where
each key is 32 bytes (AES-256) in URL-safe base64. The first entry encrypts
and every entry decrypts, so a new key can go first while values written
under the old ones stay readable until ``crm keys rotate`` re-encrypts them.

An encrypted value is ``enc1:<key id>:<base64 of nonce, ciphertext and tag>``.
The associated data is ``<table>.<column>``, so a value copied into another
column fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENVELOPE = "enc1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
ENTRY_SEPARATORS = re.compile(r"[\s,]+")


class KeyringError(ValueError):
    """A key list is malformed. The message names the entry, never the key."""


class DecryptionError(Exception):
    """A stored value could not be decrypted with the configured keys."""


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


def new_key_entry(key_id: str | None = None) -> str:
    """Return a new ``id:key`` entry. The default id is k and the UTC time."""
    if key_id is None:
        key_id = "k" + dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    if not KEY_ID.fullmatch(key_id):
        raise KeyringError(
            f"key id {key_id!r} is invalid: use 1 to 32 letters, digits, - or _"
        )
    return f"{key_id}:{encode(secrets.token_bytes(KEY_BYTES))}"


def is_encrypted(value: str) -> bool:
    return value.startswith(ENVELOPE + ":")


def key_id_of(value: str) -> str | None:
    """Return the id of the key that encrypted ``value``, or None for plaintext."""
    if not is_encrypted(value):
        return None
    return value.split(":", 2)[1]


@dataclass(frozen=True)
class Keyring:
    """The keys of one process: ``current_id`` encrypts, all of ``keys`` decrypt."""

    current_id: str
    keys: Mapping[str, AESGCM]

    @classmethod
    def parse(cls, text: str, source: str = "CRM_ENCRYPTION_KEYS") -> Keyring:
        """Read a key list. Raises KeyringError naming ``source`` and the entry."""
        entries = [entry for entry in ENTRY_SEPARATORS.split(text) if entry]
        if not entries:
            raise KeyringError(f"{source} contains no key")

        keys: dict[str, AESGCM] = {}
        for position, entry in enumerate(entries, start=1):
            key_id, _, encoded = entry.partition(":")
            where = f"{source} entry {position} (id {key_id!r})"
            if not KEY_ID.fullmatch(key_id) or not encoded:
                raise KeyringError(
                    f"{where} is invalid: write it as id:key, where the id has "
                    "1 to 32 letters, digits, - or _"
                )
            if key_id in keys:
                raise KeyringError(f"{where} repeats an id used before")
            try:
                key = decode(encoded)
            except (binascii.Error, ValueError):
                raise KeyringError(
                    f"{where} is invalid: the key is not URL-safe base64"
                ) from None
            if len(key) != KEY_BYTES:
                raise KeyringError(
                    f"{where} is invalid: the key has {len(key)} bytes, not "
                    f"{KEY_BYTES}; make one with `crm keys generate`"
                )
            keys[key_id] = AESGCM(key)
        return cls(current_id=next(iter(keys)), keys=keys)

    @property
    def key_ids(self) -> list[str]:
        return list(self.keys)

    def encrypt(self, plaintext: str, context: str) -> str:
        """Encrypt under the current key. ``context`` is ``<table>.<column>``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.keys[self.current_id].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("ascii")
        )
        return f"{ENVELOPE}:{self.current_id}:{encode(nonce + sealed)}"

    def decrypt(self, value: str, context: str) -> str:
        """Decrypt a value that ``encrypt`` produced with any known key.

        Raises DecryptionError for an unknown key id, a malformed value, or a
        value that was altered or encrypted for another column.
        """
        parts = value.split(":", 2)
        if len(parts) != 3 or parts[0] != ENVELOPE:
            raise DecryptionError(f"{context} value is not in the {ENVELOPE} format")
        _, key_id, payload = parts
        cipher = self.keys.get(key_id)
        if cipher is None:
            raise DecryptionError(
                f"{context} is encrypted under key {key_id!r}, which is not in "
                f"the configured keys {self.key_ids}"
            )
        try:
            data = decode(payload)
            plaintext = cipher.decrypt(
                data[:NONCE_BYTES], data[NONCE_BYTES:], context.encode("ascii")
            )
        except (binascii.Error, ValueError, InvalidTag):
            raise DecryptionError(
                f"{context} value under key {key_id!r} is corrupt or belongs "
                "to another column"
            ) from None
        return plaintext.decode("utf-8")
