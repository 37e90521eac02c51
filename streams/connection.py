"""How every Kafka client of the service connects: one function turns ``KafkaSettings``
(``PVSIGNAL_KAFKA_*``, ``pvsignal consume`` options) into kafka-python's keyword arguments,
and the consumer, the dead-letter and alert producer and the alerts read-back all take them.
"""

from __future__ import annotations

from typing import Any

from pvsignal.settings import KafkaSettings


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python's connection and security options (``KafkaConsumer``, ``KafkaProducer``,
    ``KafkaAdminClient`` all take them); ``bootstrap_servers`` is the caller's."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = settings.ssl_check_hostname
        if settings.ssl_cafile is not None:
            options["ssl_cafile"] = str(settings.ssl_cafile)
        if settings.ssl_certfile is not None:
            options["ssl_certfile"] = str(settings.ssl_certfile)
            options["ssl_keyfile"] = str(settings.ssl_keyfile)
        if settings.ssl_key_password is not None:
            options["ssl_password"] = settings.ssl_key_password.get_secret_value()
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None  # the settings' validator saw to it
        # kafka-python names the SCRAM credentials sasl_plain_* too.
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options
