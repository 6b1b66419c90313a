import pytest

from app.config import ConfigError, Settings

VALID = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/crm",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SECRET_KEY": "s3cret",
    "CRM_ENCRYPTION_KEYS": "test:" + "A" * 43,
}


def test_settings_read_valid_environment() -> None:
    settings = Settings.from_env({**VALID, "PORT": "9000"})

    assert settings.port == 9000
    assert settings.redis_prefix == "crm:"


@pytest.mark.parametrize("name", ["DATABASE_URL", "REDIS_URL"])
def test_missing_url_names_variable(name: str) -> None:
    environ = {key: value for key, value in VALID.items() if key != name}

    with pytest.raises(ConfigError, match=name):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://localhost/crm"),
        ("DATABASE_URL", "postgresql:///"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
    ],
)
def test_invalid_value_names_variable_and_value(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**VALID, name: value})

    assert name in str(raised.value)
    assert value in str(raised.value)


def test_unix_socket_urls_are_accepted() -> None:
    settings = Settings.from_env(
        {
            **VALID,
            "DATABASE_URL": "postgresql://postgres@/switchboard?host=/tmp/pg",
            "REDIS_URL": "unix:///tmp/redis.sock",
        }
    )

    assert settings.redis_url.startswith("unix://")


def test_generated_secret_is_kept(tmp_path) -> None:
    environ = {key: value for key, value in VALID.items() if key != "SECRET_KEY"}
    environ["CRM_DATA_DIR"] = str(tmp_path)

    first = Settings.from_env(environ).secret_key
    second = Settings.from_env(environ).secret_key

    assert first == second
    assert len(first) >= 32


def test_invalid_url_error_hides_its_password() -> None:
    env = {**VALID, "DATABASE_URL": "mysql://crm:s3cretpw@127.0.0.1/crm"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert "s3cretpw" not in str(caught.value)
    assert "mysql://crm:***@127.0.0.1/crm" in str(caught.value)
