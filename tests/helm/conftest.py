"""Rendering the chart with the Helm v4 engine (helm-python-sdk, no cluster, no helm binary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "pvsignal"
RELEASE, NAMESPACE = "pv", "pvsignal"
SECRET = "pvsignal-prod"  # the production set's existingSecret

# A production set: TLS + SASL Kafka, PostgreSQL (TLS) via existingSecret, monitoring on.
PRODUCTION: dict[str, Any] = {
    "secrets": {"existingSecret": SECRET, "secretKey": "", "storeUrl": ""},
    "store": {"type": "postgresql", "poolSize": 8, "tls": {"caSecret": "postgres-ca"}},
    "kafka": {
        "enabled": True,
        "bootstrap": "kafka-0.kafka:9093,kafka-1.kafka:9093",
        "partitions": 6,
        "securityProtocol": "SASL_SSL",
        "tls": {"secret": "kafka-tls", "clientCertificate": True, "checkHostname": True},
        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "pvsignal"},
    },
    "oidc": {
        "issuer": "https://login.example.org/realms/pv",
        "audience": "pvsignal",
        "jwksUrl": "https://login.example.org/realms/pv/protocol/openid-connect/certs",
        "clientId": "pvsignal-dashboard",
        "sessionMinutes": 240,
    },
    "scopes": {"scopes": [{"name": "north", "filter": {"regions": ["CN-HL", "CN-JL", "CN-LN"]}}]},
    "registries": {
        "products": [
            {
                "product_id": "P-1",
                "names": ["Examplomab"],
                "kind": "biologic",
                "pathway": "innovative",
                "mah_id": "MAH-A",
            }
        ]
    },
    "api": {
        "replicas": 3,
        "ingress": {"enabled": True, "className": "nginx", "tlsSecret": "pvsignal-tls"},
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 8},
    },
    "consumer": {"replicas": 3},
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": True},
    },
    "networkPolicy": {
        "apiIngressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
        ],
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    },
}


def trial_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values-trial.yaml").read_text())


VALUE_SETS = {"default": lambda: None, "trial": trial_values, "production": lambda: PRODUCTION}


@pytest.fixture(scope="session")
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(chart: helm.Chart, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every rendered manifest (hooks included), parsed; NOTES.txt left out."""
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        manifests += [doc for doc in yaml.safe_load_all(text) if doc]
    return manifests


def notes(chart: helm.Chart, values: dict[str, Any] | None) -> str:
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def option(argv: list[str], name: str) -> str:
    """The value given to a command-line option in a container's args."""
    return argv[argv.index(name) + 1]
