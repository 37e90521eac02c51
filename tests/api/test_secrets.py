"""Secrets (the secret key, the store's password, Kafka credentials in the environment) never
appear in the API's logs, /metrics or probes."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import test_settings
from tests.support.postgres import create_database

SECRET_KEY = "s" * 16 + "-api-secret-key-never-shown"
DB_PASSWORD = "db-pa55word-never-shown"
KAFKA_PASSWORD = "kafka-pa55word-never-shown"


def test_no_secret_in_logs_metrics_or_probes(postgres_server, monkeypatch, caplog):
    url = create_database(postgres_server, "api_secrets")
    # The test cluster trusts local connections: the password is carried, not checked.
    user_at = url.split("://", 1)[1].split("@", 1)
    with_password = f"postgresql://{user_at[0]}:{DB_PASSWORD}@{user_at[1]}"
    monkeypatch.setenv("PVSIGNAL_KAFKA_SASL_PASSWORD", KAFKA_PASSWORD)
    settings = test_settings(
        with_password, environment="production", secret_key=SECRET_KEY, kafka_bootstrap="k:1"
    )
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(settings)) as client:
        answers = [
            client.get("/metrics"),
            client.get("/readyz"),
            client.get("/livez"),
            client.get("/v1/signals"),  # 401, logged
            client.get("/v1/signals", headers={"Authorization": f"Bearer {SECRET_KEY}"}),
        ]
    assert answers[1].status_code == 200
    seen = caplog.text + "".join(a.text for a in answers) + repr(settings)
    for secret in (SECRET_KEY, DB_PASSWORD, KAFKA_PASSWORD):
        assert secret not in seen
