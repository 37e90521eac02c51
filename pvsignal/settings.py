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

    store_url: str = Field(default=DEFAULT_URL, description="sqlite:///FILE or postgresql://...")
    environment: Literal["development", "production"] = "development"
    secret_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SECRET),
        description="signs pagination cursors and encrypts webhook secrets at rest",
    )
    scope_config: Path | None = Field(default=None, description="YAML file declaring the scopes")

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
