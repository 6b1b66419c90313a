"""Encrypt contact phone numbers and add the encrypted personal notes column."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-04T16:22:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Encrypt sensitive contact fields"

FORWARDS = [
    # Ciphertext is longer than the 60 characters a phone number may have,
    # and the service checks that limit on the plaintext.
    "ALTER TABLE contact ALTER COLUMN phone TYPE text",
    "ALTER TABLE contact ADD COLUMN personal_notes text NOT NULL DEFAULT ''",
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)

    async def run() -> None:
        from app.contacts.tables import Contact
        from app.encryption.columns import get_keyring
        from app.encryption.rotation import rotate_column

        engine = engine_finder()
        assert engine is not None
        for statement in FORWARDS:
            await engine.run_ddl(statement)
        # Phone numbers stored so far are plaintext: encrypt them with the
        # current key, as `crm keys rotate` would.
        await rotate_column(Contact, "phone", get_keyring(), batch_size=1000)

    manager.add_raw(run)
    return manager
