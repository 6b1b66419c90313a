"""Encrypt contact phone numbers and add the encrypted personal notes column."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import sql_migration

ID = "2026-12-04T16:22:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Encrypt sensitive contact fields"

FORWARDS = [
    # Ciphertext is longer than the 60 characters a phone number may have,
    # and the service checks that limit on the plaintext.
    "ALTER TABLE contact ALTER COLUMN phone TYPE text",
    "ALTER TABLE contact ADD COLUMN personal_notes text NOT NULL DEFAULT ''",
]


async def encrypt_phones() -> None:
    from app.contacts.tables import Contact
    from app.encryption.columns import get_keyring
    from app.encryption.rotation import rotate_column

    # Phone numbers stored so far are plaintext: encrypt them with the
    # current key, as `crm keys rotate` would.
    await rotate_column(Contact, "phone", get_keyring(), batch_size=1000)


async def forwards() -> MigrationManager:
    manager = sql_migration(ID, DESCRIPTION, FORWARDS)
    manager.add_raw(encrypt_phones)
    return manager
