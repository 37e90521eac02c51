"""Kafka TLS and SASL: PVSIGNAL_KAFKA_* and `consume` options reach every kafka-python client
(checked on the client objects), invalid combinations are refused naming the setting, and the
password shows in neither logs nor /metrics."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from pvsignal.cli import build_parser, main
from pvsignal.errors import InputError
from pvsignal.scopes import ScopeConfig
from pvsignal.settings import KafkaSettings
from streams.cli import kafka_settings
from streams.connection import client_options
from streams.consumer import ConsumerConfig, StreamConsumer
from streams.metrics import StreamMetrics
from tests.streams.conftest import NoDetection, running

PASSWORD = "kafka-pa55word-never-shown"
SECURITY_KEYS = (
    "security_protocol",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
)


@pytest.fixture
def pem_files(tmp_path):
    """Stand-ins for the CA, certificate and key (read only when a connection is made)."""
    files = {}
    for name in ("ca.crt", "client.crt", "client.key"):
        path = tmp_path / name
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
        files[name] = path
    return files


def _consumer(config: ConsumerConfig, store_url: str) -> StreamConsumer:
    return StreamConsumer(
        config,
        store_url=store_url,
        scopes=ScopeConfig(),
        metrics=StreamMetrics(CollectorRegistry()),
        detector_factory=NoDetection,
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_consume_options_and_environment_reach_every_client(
    mechanism, pem_files, monkeypatch, tmp_path
):
    monkeypatch.setenv("PVSIGNAL_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("PVSIGNAL_KAFKA_SSL_CAFILE", str(pem_files["ca.crt"]))
    args = build_parser().parse_args(
        [
            "consume",
            "--bootstrap",
            "kafka-0.example:9093",
            "--security-protocol",
            "SASL_SSL",
            "--ssl-certfile",
            str(pem_files["client.crt"]),
            "--ssl-keyfile",
            str(pem_files["client.key"]),
            "--sasl-mechanism",
            mechanism,
            "--sasl-username",
            "pvsignal",
        ]
    )
    settings = kafka_settings(args)
    # api_version given: kafka-python builds its clients without asking a broker.
    client = {**client_options(settings), "api_version": (2, 5)}
    config = ConsumerConfig(bootstrap=settings.bootstrap, client=client)
    consumer = _consumer(config, f"sqlite:///{tmp_path / 's.db'}")
    kafka = consumer._start_kafka()
    reader = consumer._alerts_reader()
    try:
        expected = {
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(pem_files["ca.crt"]),
            "ssl_certfile": str(pem_files["client.crt"]),
            "ssl_keyfile": str(pem_files["client.key"]),
            "ssl_check_hostname": True,
            "sasl_mechanism": mechanism,
            "sasl_plain_username": "pvsignal",
            "sasl_plain_password": PASSWORD,
        }
        for name, client_object in [
            ("consumer", kafka.consumer),
            ("producer (dead letters, alerts)", kafka.producer),
            ("alerts read-back", reader),
        ]:
            got = {key: client_object.config[key] for key in SECURITY_KEYS}
            assert got == expected, name
            assert client_object.config["bootstrap_servers"] == "kafka-0.example:9093", name
    finally:
        reader.close()
        consumer.close()


def test_plaintext_by_default_sets_no_tls_or_sasl():
    options = client_options(KafkaSettings(bootstrap="k:9092"))
    assert options == {"security_protocol": "PLAINTEXT"}


def test_tls_without_sasl(pem_files):
    settings = KafkaSettings(
        bootstrap="k:9093",
        security_protocol="SSL",
        ssl_cafile=pem_files["ca.crt"],
        ssl_check_hostname=False,
    )
    assert client_options(settings) == {
        "security_protocol": "SSL",
        "ssl_cafile": str(pem_files["ca.crt"]),
        "ssl_check_hostname": False,
    }


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (
            {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "p"},
            "sasl_mechanism",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
            "kafka_sasl_username, kafka_sasl_password",
        ),
        ({"sasl_mechanism": "SCRAM-SHA-256"}, "kafka_sasl_mechanism: set but"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.crt"}, "kafka_ssl_cafile"),
        ({"ssl_cafile": "CA"}, "kafka_ssl_cafile is set but kafka_security_protocol is PLAINTEXT"),
        (
            {"security_protocol": "SSL", "ssl_certfile": "CRT"},
            "kafka_ssl_certfile and kafka_ssl_keyfile",
        ),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
    ],
)
def test_invalid_combinations_are_refused_naming_the_setting(values, named, pem_files):
    files = {"CA": pem_files["ca.crt"], "CRT": pem_files["client.crt"]}
    values = {k: files.get(v, v) for k, v in values.items()}
    with pytest.raises(ValidationError, match=named):
        KafkaSettings(bootstrap="k:9092", **values)


def test_the_command_refuses_an_invalid_combination_naming_the_setting(monkeypatch, capsys):
    monkeypatch.setenv("PVSIGNAL_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("PVSIGNAL_KAFKA_SASL_PASSWORD", PASSWORD)
    assert main(["consume", "--bootstrap", "k:9092", "--security-protocol", "SASL_SSL"]) == 2
    err = capsys.readouterr().err
    assert "kafka_sasl_username: required with kafka_security_protocol SASL_SSL" in err
    assert PASSWORD not in err


def test_the_command_needs_a_bootstrap(monkeypatch):
    monkeypatch.delenv("PVSIGNAL_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(InputError, match="kafka_bootstrap"):
        kafka_settings(build_parser().parse_args(["consume"]))
    monkeypatch.setenv("PVSIGNAL_KAFKA_BOOTSTRAP", "k:9092")
    assert kafka_settings(build_parser().parse_args(["consume"])).bootstrap == "k:9092"


def test_the_password_never_reaches_logs_or_metrics(kafka_broker, tmp_path, caplog):
    """A SASL consumer against a broker that does not speak SASL fails, retries and logs it:
    neither its log lines nor its /metrics hold the password."""
    settings = KafkaSettings(
        bootstrap=kafka_broker,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="pvsignal",
        sasl_password=PASSWORD,
    )
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())
    config = ConsumerConfig(
        bootstrap=kafka_broker,
        topic="security-test",
        group=None,
        backoff=(0.2, 0.5),
        client=client_options(settings),
    )
    consumer = _consumer(config, f"sqlite:///{tmp_path / 's.db'}")
    caplog.set_level(logging.DEBUG)
    with running(consumer):
        time.sleep(4)
        assert not consumer.ready
    assert caplog.records, "the failing consumer logged nothing"
    assert PASSWORD not in caplog.text
    assert PASSWORD.encode() not in generate_latest(consumer.metrics.registry)
