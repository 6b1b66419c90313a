"""Decrypting marked fields in query results, by result column name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.encryption import marked
from app.encryption.columns import set_keyring
from app.encryption.keyring import Keyring, new_key_entry

KEYRING = Keyring.parse(new_key_entry("unit"))


@pytest.fixture(autouse=True)
def city_marked() -> Iterator[None]:
    set_keyring(KEYRING)
    marked.set_states(
        [{"table_name": "account", "column_name": "city", "state": "encrypted"}]
    )
    yield
    marked.set_states([])
    set_keyring(None)


def test_result_names_that_decrypt() -> None:
    sealed = KEYRING.encrypt("Ghent", "account.city")
    rows = [
        {
            "city": sealed,
            "a.city": sealed,
            "account_city": sealed,
            "account.city": sealed,
        }
    ]

    marked.decrypt_rows(rows)

    assert rows[0] == {
        "city": "Ghent",
        "a.city": "Ghent",
        "account_city": "Ghent",
        "account.city": "Ghent",
    }


def test_other_names_keep_ciphertext() -> None:
    sealed = KEYRING.encrypt("Ghent", "account.city")
    rows = [{"value": sealed, "town": sealed}]

    marked.decrypt_rows(rows)

    assert rows[0] == {"value": sealed, "town": sealed}


def test_other_column_context_is_kept() -> None:
    """A value encrypted for another column of the same name is left alone."""
    sealed = KEYRING.encrypt("Ghent", "contact.city")
    rows = [{"city": sealed, "name": "Acme"}]

    marked.decrypt_rows(rows)

    assert rows[0]["city"] == sealed
    assert rows[0]["name"] == "Acme"


def test_plaintext_passes_through() -> None:
    rows = [{"city": "Ghent"}, {"city": ""}, {"city": None}]

    marked.decrypt_rows(rows)

    assert rows == [{"city": "Ghent"}, {"city": ""}, {"city": None}]


def test_decrypting_state_still_decrypts() -> None:
    marked.set_states(
        [{"table_name": "account", "column_name": "city", "state": "decrypting"}]
    )
    sealed = KEYRING.encrypt("Ghent", "account.city")
    rows = [{"city": sealed}]

    marked.decrypt_rows(rows)

    assert rows[0]["city"] == "Ghent"
    assert marked.encrypting_columns("account") == []
