"""Every setting of the service, from one place: ``PVSIGNAL_*`` environment variables.

Built once by whoever starts the service (``pvsignal serve``, a test), never at import time:
``Settings()`` reads the environment, keyword arguments override it. Validators refuse unsafe
values outside development: the default secret, or a secret too short to sign with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pvsignal.review import DEFAULT_DEADLINE_DAYS
from pvsignal.store import DEFAULT_URL

ReviewDeadlineStatus = Literal[
    "validation", "validated", "assessment", "confirmed", "not_confirmed", "monitoring"
]

# Only ever acceptable in development: anyone who reads this file knows it.
DEVELOPMENT_SECRET = "pvsignal-development-secret-do-not-use-in-production"
_MIB = 1 << 20


class Settings(BaseSettings):
    """The service's configuration (env prefix ``PVSIGNAL_``, e.g. ``PVSIGNAL_STORE_URL``)."""

    model_config = SettingsConfigDict(env_prefix="PVSIGNAL_", frozen=True, extra="forbid")

    store_url: str = Field(
        default=DEFAULT_URL,
        description="sqlite:///FILE or postgresql://USER:PASSWORD@HOST:PORT/DB?sslmode=..."
        " (TLS as libpq parameters: sslmode, sslrootcert, sslcert, sslkey)",
        repr=False,  # it may hold the database password
    )
    environment: Literal["development", "production"] = "development"
    secret_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SECRET),
        description="signs pagination cursors and encrypts webhook secrets at rest",
    )
    scope_config: Path | None = Field(default=None, description="YAML file declaring the scopes")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="the proxies whose X-Forwarded-Proto and X-Forwarded-For are believed "
        "(uvicorn's forwarded_allow_ips: addresses, networks, or * when only the proxy can "
        "reach the server): behind a TLS ingress the dashboard's OIDC callback is then https",
    )

    # Request bodies: reports may come in large NDJSON batches, everything else is small.
    max_body_bytes: PositiveInt = 1 * _MIB
    max_report_body_bytes: PositiveInt = 64 * _MIB
    max_batch_records: PositiveInt = 100_000
    max_record_bytes: PositiveInt = Field(
        default=1 * _MIB,
        description="one report (an NDJSON line, a JSON body): a report holds at most 200 "
        "products and 500 reactions, far less than this; a longer line is refused unparsed",
    )

    # OIDC / JWT bearer tokens (optional): a static PEM key or a JWKS URL, issuer and audience.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_public_key: SecretStr | None = Field(default=None, description="PEM public key")
    oidc_algorithms: tuple[str, ...] = ("RS256", "ES256")
    oidc_role_claim: str = "pvsignal_role"
    oidc_org_claim: str = "pvsignal_org"
    # The dashboard's sign-in (authorization code + PKCE at the issuer's discovered endpoints).
    oidc_client_id: str | None = Field(default=None, description="the dashboard's OIDC client")
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="only for a confidential client; PKCE alone otherwise"
    )
    ui_session_minutes: PositiveInt = Field(
        default=480, description="a dashboard session ends this long after sign-in"
    )

    # Continuous detection and fan-out.
    detect_in_process: bool = Field(
        default=True,
        description="run detection after accepted batches; turn off when the streams engine "
        "detects (two detectors on one store would race for the same signal states)",
    )
    detect_debounce_seconds: PositiveFloat = 0.5
    alerts_poll_seconds: PositiveFloat = 1.0
    signals_freshness_seconds: PositiveFloat = 1.0
    registry_freshness_seconds: PositiveFloat = 2.0

    # Webhooks: exponential backoff base * 2**(attempt-1), capped, with a little jitter.
    webhook_max_attempts: PositiveInt = 8
    webhook_backoff_seconds: PositiveFloat = 2.0
    webhook_backoff_max_seconds: PositiveFloat = 3600.0
    webhook_jitter: float = Field(default=0.1, ge=0, le=1)
    webhook_timeout_seconds: PositiveFloat = 10.0
    webhook_poll_seconds: PositiveFloat = 1.0
    webhook_allowed_hosts: tuple[str, ...] = Field(
        default=(), description="when not empty, webhook URLs may only name these hosts"
    )
    webhook_allow_private: bool | None = Field(
        default=None,
        description="allow loopback and private addresses (default: in development only)",
    )

    # Kafka (optional): when set, /readyz reports the consumers' stored offsets.
    kafka_bootstrap: str | None = None
    kafka_topic: str = "pvsignal.reports"

    # Signal review: days allowed in each status before a review is overdue (GVP Module IX's
    # timelines by default; see pvsignal.review.DEFAULT_DEADLINE_DAYS for the numbers).
    review_deadline_days: dict[ReviewDeadlineStatus, PositiveInt] = Field(
        default_factory=lambda: dict(DEFAULT_DEADLINE_DAYS),
        description='e.g. PVSIGNAL_REVIEW_DEADLINE_DAYS=\'{"validation": 30, "assessment": 60}\'',
    )

    store_pool_size: PositiveInt = 4
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _safe_outside_development(self) -> Settings:
        if self.environment == "development":
            return self
        secret = self.secret_key.get_secret_value()
        if secret == DEVELOPMENT_SECRET:
            raise ValueError(
                "secret_key: the development default is refused in production; "
                "set PVSIGNAL_SECRET_KEY to at least 32 random characters"
            )
        if len(secret) < 32:
            raise ValueError(f"secret_key: {len(secret)} characters, at least 32 are needed")
        return self

    @property
    def private_webhooks_allowed(self) -> bool:
        if self.webhook_allow_private is not None:
            return self.webhook_allow_private
        return self.environment == "development"

    @property
    def oidc_enabled(self) -> bool:
        return self.oidc_issuer is not None and (
            self.oidc_jwks_url is not None or self.oidc_public_key is not None
        )


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """How the consumer and every producer reach Kafka (env prefix ``PVSIGNAL_KAFKA_``, e.g.
    ``PVSIGNAL_KAFKA_SASL_PASSWORD``).

    ``security_protocol`` says whether TLS (``SSL``, ``SASL_SSL``) and SASL (``SASL_*``) are
    used. TLS takes a CA file (else the system's CAs) and, for mutual TLS, a client
    certificate and key; SASL takes a mechanism, a username and a password. A combination that
    could not work (SASL options without a SASL protocol, a certificate without its key, a file
    that does not exist) is refused with the setting's name.
    """

    model_config = SettingsConfigDict(env_prefix="PVSIGNAL_KAFKA_", frozen=True, extra="forbid")

    bootstrap: str | None = Field(default=None, description="HOST:PORT[,HOST:PORT...]")
    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM) of the brokers")
    ssl_certfile: Path | None = Field(default=None, description="client certificate (PEM)")
    ssl_keyfile: Path | None = Field(default=None, description="client private key (PEM)")
    ssl_key_password: SecretStr | None = Field(default=None, description="of an encrypted key")
    ssl_check_hostname: bool = True
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        sasl = self.security_protocol.startswith("SASL_")
        ssl_files = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        for name, path in ssl_files.items():
            if path is None:
                continue
            if not tls:
                raise ValueError(
                    f"kafka_{name} is set but kafka_security_protocol is "
                    f"{self.security_protocol}: use SSL or SASL_SSL"
                )
            if not path.is_file():
                raise ValueError(f"kafka_{name}: {str(path)!r} is not a readable file")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "kafka_ssl_certfile and kafka_ssl_keyfile: a client certificate needs its key "
                "(set both, or neither)"
            )
        given = {
            "kafka_sasl_mechanism": self.sasl_mechanism,
            "kafka_sasl_username": self.sasl_username,
            "kafka_sasl_password": self.sasl_password,
        }
        if sasl:
            missing = [name for name, value in given.items() if not value]
            if missing:
                raise ValueError(
                    f"{', '.join(missing)}: required with kafka_security_protocol "
                    f"{self.security_protocol}"
                )
        else:
            stray = [name for name, value in given.items() if value]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)}: set but kafka_security_protocol is "
                    f"{self.security_protocol}: use SASL_PLAINTEXT or SASL_SSL"
                )
        return self
