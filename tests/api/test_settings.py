"""Settings: one class, PVSIGNAL_* environment, frozen, unsafe values refused outside dev."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.problems import UnprocessableError
from api.webhooks import check_url
from pvsignal.settings import DEVELOPMENT_SECRET, Settings

STRONG = "s" * 40


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PVSIGNAL_STORE_URL", "sqlite:///elsewhere.db")
    monkeypatch.setenv("PVSIGNAL_WEBHOOK_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("PVSIGNAL_WEBHOOK_ALLOWED_HOSTS", '["hooks.example.com"]')
    settings = Settings()
    assert settings.store_url == "sqlite:///elsewhere.db"
    assert settings.webhook_max_attempts == 5
    assert settings.webhook_allowed_hosts == ("hooks.example.com",)
    assert Settings(store_url="sqlite://").store_url == "sqlite://"  # arguments win


def test_settings_are_frozen():
    with pytest.raises(ValidationError):
        Settings().store_url = "sqlite://"  # type: ignore[misc]


@pytest.mark.parametrize("secret", [DEVELOPMENT_SECRET, "short"])
def test_production_refuses_a_default_or_weak_secret(secret: str):
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(environment="production", secret_key=secret)
    assert Settings(environment="production", secret_key=STRONG).environment == "production"


def test_unknown_settings_are_refused(monkeypatch):
    with pytest.raises(ValidationError):
        Settings(store_uri="sqlite://")  # a typo must not pass silently


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # production: https only
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
    ],
)
def test_production_webhooks_refuse_plain_http_and_private_targets(url: str):
    settings = Settings(environment="production", secret_key=STRONG)
    with pytest.raises(UnprocessableError):
        check_url(url, settings)


def test_allowed_hosts_narrow_webhook_targets():
    settings = Settings(webhook_allowed_hosts=("hooks.example.com",))
    check_url("https://hooks.example.com/x", settings)
    with pytest.raises(UnprocessableError):
        check_url("https://other.example.com/x", settings)
