"""Encryption keys: parsing key lists, encrypting, and the generated key file."""

from __future__ import annotations

import pytest

from app.config import ConfigError, Settings
from app.encryption.keyring import (
    DecryptionError,
    Keyring,
    KeyringError,
    key_id_of,
    new_key_entry,
)

VALID = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/crm",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SECRET_KEY": "s3cret",
}


def test_first_key_encrypts_and_all_decrypt() -> None:
    old_entry = new_key_entry("old")
    old = Keyring.parse(old_entry)
    both = Keyring.parse(new_key_entry("new") + ",\n " + old_entry)
    written_before = old.encrypt("+1 555 0100", "contact.phone")

    value = both.encrypt("+1 555 0100", "contact.phone")

    assert key_id_of(value) == "new"
    assert key_id_of(written_before) == "old"
    assert both.decrypt(value, "contact.phone") == "+1 555 0100"
    assert both.decrypt(written_before, "contact.phone") == "+1 555 0100"
    assert "555" not in value


def test_same_plaintext_encrypts_differently() -> None:
    keyring = Keyring.parse(new_key_entry("a"))

    first = keyring.encrypt("secret", "contact.personal_notes")
    second = keyring.encrypt("secret", "contact.personal_notes")

    assert first != second


def test_value_of_other_column_fails() -> None:
    keyring = Keyring.parse(new_key_entry("a"))
    value = keyring.encrypt("+1 555 0100", "contact.phone")

    with pytest.raises(DecryptionError, match=r"contact\.personal_notes"):
        keyring.decrypt(value, "contact.personal_notes")


def test_altered_value_fails() -> None:
    keyring = Keyring.parse(new_key_entry("a"))
    value = keyring.encrypt("+1 555 0100", "contact.phone")
    altered = value[:-2] + ("AA" if value[-2:] != "AA" else "BB")

    with pytest.raises(DecryptionError, match="corrupt"):
        keyring.decrypt(altered, "contact.phone")


def test_unknown_key_id_is_named() -> None:
    written = Keyring.parse(new_key_entry("gone")).encrypt("x", "contact.phone")
    keyring = Keyring.parse(new_key_entry("kept"))

    with pytest.raises(DecryptionError, match="'gone'"):
        keyring.decrypt(written, "contact.phone")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "contains no key"),
        ("nokey", "write it as id:key"),
        ("bad id:AAAA", "write it as id:key"),
        ("a:not*base64", "not URL-safe base64"),
        ("a:AAAA", "has 3 bytes, not 32"),
    ],
)
def test_malformed_key_list_is_rejected(text: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message):
        Keyring.parse(text)


def test_repeated_key_id_is_rejected() -> None:
    with pytest.raises(KeyringError, match="repeats"):
        Keyring.parse(new_key_entry("a") + "," + new_key_entry("a"))


def test_key_list_error_never_shows_key() -> None:
    entry = "a:" + "Q" * 40

    with pytest.raises(KeyringError) as raised:
        Keyring.parse(entry)

    assert "Q" * 40 not in str(raised.value)


def test_invalid_key_id_is_rejected() -> None:
    with pytest.raises(KeyringError, match="key id"):
        new_key_entry("has space")


def test_settings_read_keys_from_environment() -> None:
    entry = new_key_entry("env")

    settings = Settings.from_env({**VALID, "CRM_ENCRYPTION_KEYS": entry})

    assert settings.encryption_keys.current_id == "env"
    assert entry not in repr(settings)


def test_invalid_key_setting_names_variable() -> None:
    with pytest.raises(ConfigError, match="CRM_ENCRYPTION_KEYS"):
        Settings.from_env({**VALID, "CRM_ENCRYPTION_KEYS": "a:AAAA"})


def test_generated_key_file_is_kept(tmp_path) -> None:
    environ = {**VALID, "CRM_DATA_DIR": str(tmp_path)}

    first = Settings.from_env(environ).encryption_keys
    second = Settings.from_env(environ).encryption_keys
    value = first.encrypt("kept", "contact.phone")

    assert second.decrypt(value, "contact.phone") == "kept"
    assert (tmp_path / "encryption_keys").stat().st_mode & 0o777 == 0o600


def test_secure_cookie_setting_is_checked() -> None:
    keys = {"CRM_ENCRYPTION_KEYS": new_key_entry("a")}

    assert Settings.from_env({**VALID, **keys}).secure_cookies == "auto"
    with pytest.raises(ConfigError, match="CRM_SECURE_COOKIES"):
        Settings.from_env({**VALID, **keys, "CRM_SECURE_COOKIES": "yes"})
