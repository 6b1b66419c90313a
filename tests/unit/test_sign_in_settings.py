import pytest

from app.config import ConfigError, Settings

VALID = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/crm",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SECRET_KEY": "s3cret",
    "CRM_ENCRYPTION_KEYS": "k1:" + "A" * 43,
}


def test_sign_in_defaults() -> None:
    settings = Settings.from_env(VALID)

    assert settings.sign_in.session_idle_timeout == 3600
    assert settings.sign_in.session_absolute_timeout == 12 * 3600
    assert settings.sign_in.signin_max_failures == 10
    assert settings.smtp_url is None
    assert settings.public_url == "http://127.0.0.1:8000"


def test_sign_in_settings_read_from_environment() -> None:
    settings = Settings.from_env(
        {
            **VALID,
            "SESSION_IDLE_TIMEOUT": "120",
            "SESSION_ABSOLUTE_TIMEOUT": "600",
            "SIGNIN_LOCKOUT": "30",
            "SMTP_URL": "smtps://mailer:pw@127.0.0.1:465",
            "MAIL_FROM": "CRM <crm@example.com>",
            "PUBLIC_URL": "https://crm.example.com/",
        }
    )

    assert settings.sign_in.session_idle_timeout == 120
    assert settings.sign_in.session_absolute_timeout == 600
    assert settings.sign_in.signin_lockout == 30
    assert settings.smtp_url == "smtps://mailer:pw@127.0.0.1:465"
    assert settings.public_url == "https://crm.example.com"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SESSION_IDLE_TIMEOUT", "ten"),
        ("SESSION_ABSOLUTE_TIMEOUT", "0"),
        ("SIGNIN_MAX_FAILURES", "-1"),
        ("SMTP_URL", "http://127.0.0.1:25"),
        ("MAIL_FROM", "nobody"),
        ("PUBLIC_URL", "crm.example.com"),
    ],
)
def test_invalid_sign_in_setting_names_variable_and_value(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**VALID, name: value})

    assert name in str(raised.value)
    assert value in str(raised.value)
