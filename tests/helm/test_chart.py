"""The chart renders for the default, trial and production values, lints clean in strict mode,
validates against the Kubernetes 1.30 schemas, and refuses wrong values."""

from __future__ import annotations

import copy
import json
import re
import tomllib

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from pvsignal.products import Kind, Pathway, RegisteredProduct
from tests.helm.conftest import (
    CHART,
    PRODUCTION,
    SECRET,
    VALUE_SETS,
    by_kind,
    notes,
    option,
    render,
)

KUBERNETES = "1.30.0"
# Custom resources of the Prometheus Operator: not in Kubernetes' schemas (checked below).
CUSTOM = {"ServiceMonitor", "PrometheusRule"}


def test_app_version_is_the_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((CHART.parents[1] / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_strict_lint_reports_nothing(name):
    report = helm.lint(CHART, VALUE_SETS[name](), strict=True, kube_version=f"v{KUBERNETES}")
    assert report["errors"] == []
    assert report["messages"] == []


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_manifest_validates_against_kubernetes_1_30(chart, name):
    manifests = render(chart, VALUE_SETS[name]())
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
    for manifest in manifests:
        if manifest["kind"] in CUSTOM:
            continue
        kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def test_what_each_set_renders(chart):
    default = render(chart, None)
    assert set(by_kind(default, "Deployment")) == {
        "pv-pvsignal-api",
        "pv-pvsignal-consumer",
        "pv-pvsignal-exposures-consumer",
    }
    assert set(by_kind(default, "Job")) == {"pv-pvsignal-migrate"}
    assert not by_kind(default, "PersistentVolumeClaim")

    trial = render(chart, VALUE_SETS["trial"]())
    assert set(by_kind(trial, "Deployment")) == {"pv-pvsignal-api"}
    assert not by_kind(trial, "Job")  # the API migrates the SQLite file itself
    assert set(by_kind(trial, "PersistentVolumeClaim")) == {"pv-pvsignal-data"}
    api = by_kind(trial, "Deployment")["pv-pvsignal-api"]
    assert api["spec"]["replicas"] == 1 and api["spec"]["strategy"]["type"] == "Recreate"
    env = by_kind(trial, "ConfigMap")["pv-pvsignal-env"]["data"]
    assert env["PVSIGNAL_STORE_URL"] == "sqlite:////data/pvsignal.db"
    assert env["PVSIGNAL_DETECT_IN_PROCESS"] == "true"
    assert env["PVSIGNAL_FORWARDED_ALLOW_IPS"] == "*"  # the ingress's X-Forwarded-Proto

    production = render(chart, PRODUCTION)
    kinds = {m["kind"] for m in production}
    assert {"Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    assert not by_kind(production, "Secret")  # existingSecret: the chart makes none
    assert set(by_kind(production, "Job")) == {"pv-pvsignal-migrate", "pv-pvsignal-products-load"}
    monitors = by_kind(production, "ServiceMonitor")
    assert set(monitors) == {
        "pv-pvsignal-api",
        "pv-pvsignal-consumer",
        "pv-pvsignal-exposures-consumer",
    }
    assert monitors["pv-pvsignal-api"]["metadata"]["labels"]["release"] == "prometheus"
    dashboard = by_kind(production, "ConfigMap")["pv-pvsignal-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["pvsignal.json"])["uid"] == "pvsignal"


def test_the_exposures_consumer_only_ingests(chart):
    """One process alone publishes alerts and runs the sequential tests (the reports consumer's
    leader here): the exposures consumer reads its own topic into the store, nothing more."""
    manifests = render(chart, PRODUCTION)
    container = _container(manifests, "pv-pvsignal-exposures-consumer")
    args = container["args"]
    assert args[:5] == ["consume", "--records", "exposures", "--no-detect", "--no-publish"]
    assert option(args, "--topic") == "pvsignal.exposures"
    assert option(args, "--dlq-topic") == "pvsignal.exposures.dlq"
    assert option(args, "--group") == "pvsignal-exposures"
    assert "--alerts-topic" not in args and "--detect-interval" not in args
    assert container["ports"][0]["containerPort"] == 9109
    reports = _container(manifests, "pv-pvsignal-consumer")
    assert "--no-publish" not in reports["args"] and "--records" not in reports["args"]
    assert set(by_kind(manifests, "NetworkPolicy")) >= {
        "pv-pvsignal-consumer",
        "pv-pvsignal-exposures-consumer",
    }
    off = render(chart, {**PRODUCTION, "exposuresConsumer": {"enabled": False}})
    assert "pv-pvsignal-exposures-consumer" not in by_kind(off, "Deployment")


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(chart):
    for values in (None, PRODUCTION):
        jobs = by_kind(render(chart, values), "Job")
        migrate = jobs["pv-pvsignal-migrate"]
        annotations = migrate["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        container = migrate["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["store", "migrate"]
        (store_url,) = [e for e in container["env"] if e["name"] == "PVSIGNAL_STORE_URL"]
        assert store_url["valueFrom"]["secretKeyRef"]["key"] == "store-url"
    # Registries load after the schema exists.
    loader = jobs["pv-pvsignal-products-load"]
    assert int(loader["metadata"]["annotations"]["helm.sh/hook-weight"]) > 0
    assert store_url["valueFrom"]["secretKeyRef"]["name"] == SECRET


def _workloads(manifests):
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "Job"):
            yield manifest["metadata"]["name"], manifest["spec"]["template"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_pods_are_locked_down(chart, name):
    for workload, template in _workloads(render(chart, VALUE_SETS[name]())):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, workload
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", workload
        assert pod["automountServiceAccountToken"] is False, workload
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, workload
            assert context["allowPrivilegeEscalation"] is False, workload
            assert context["capabilities"]["drop"] == ["ALL"], workload
            assert container["resources"]["requests"], workload
            assert container["resources"]["limits"]["memory"], workload


def test_probes_spread_and_checksum(chart):
    manifests = render(chart, PRODUCTION)
    deployments = by_kind(manifests, "Deployment")
    for name, port in (("pv-pvsignal-api", "http"), ("pv-pvsignal-consumer", "metrics")):
        template = deployments[name]["spec"]["template"]
        container = template["spec"]["containers"][0]
        assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": port}
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert re.fullmatch(r"[0-9a-f]{64}", template["metadata"]["annotations"]["checksum/config"])
        spread = template["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
        }
    consumer = deployments["pv-pvsignal-consumer"]["spec"]["template"]["spec"]["containers"][0]
    assert consumer["args"][0] == "consume"
    assert consumer["ports"][0]["containerPort"] == 9108


def test_checksum_follows_the_configuration(chart):
    def checksum(values):
        deployment = by_kind(render(chart, values), "Deployment")["pv-pvsignal-api"]
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    changed = copy.deepcopy(PRODUCTION)
    changed["store"]["poolSize"] = 9
    assert checksum(PRODUCTION) == checksum(PRODUCTION)
    assert checksum(PRODUCTION) != checksum(changed)


def _container(manifests: list[dict], deployment: str = "pv-pvsignal-api") -> dict:
    found = by_kind(manifests, "Deployment")[deployment]
    return found["spec"]["template"]["spec"]["containers"][0]


def _secret_refs(container: dict) -> dict[str, dict]:
    """Each environment variable's secretKeyRef, by name."""
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}


def test_kafka_security_reaches_the_environment(chart):
    manifests = render(chart, PRODUCTION)
    env = by_kind(manifests, "ConfigMap")["pv-pvsignal-env"]["data"]
    assert env["PVSIGNAL_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["PVSIGNAL_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["PVSIGNAL_KAFKA_SSL_CAFILE"] == "/etc/pvsignal/kafka/ca.crt"
    assert env["PVSIGNAL_KAFKA_SSL_CERTFILE"] == "/etc/pvsignal/kafka/tls.crt"
    assert env["PVSIGNAL_DETECT_IN_PROCESS"] == "false"
    assert "PASSWORD" not in " ".join(env)  # secrets come from the Secret only
    container = _container(manifests, "pv-pvsignal-consumer")
    assert _secret_refs(container)["PVSIGNAL_KAFKA_SASL_PASSWORD"] == {
        "name": SECRET,
        "key": "kafka-sasl-password",
    }
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/pvsignal/kafka", "/etc/pvsignal/postgres", "/tmp"} <= mounts


def test_the_dashboards_oidc_sign_in_reaches_the_settings(chart):
    """The env the dashboard's sign-in reads, each read back through pvsignal's Settings."""
    from pvsignal.settings import Settings

    production = render(chart, PRODUCTION)
    env = by_kind(production, "ConfigMap")["pv-pvsignal-env"]["data"]
    assert env["PVSIGNAL_OIDC_CLIENT_ID"] == "pvsignal-dashboard"
    assert env["PVSIGNAL_UI_SESSION_MINUTES"] == "240"
    assert env["PVSIGNAL_OIDC_ROLE_CLAIM"] == "pvsignal_role"
    assert "SECRET" not in " ".join(env)  # the client secret comes from the Secret only
    refs = _secret_refs(_container(production))
    # existingSecret: a confidential client's secret if the Secret holds it, else PKCE alone.
    assert refs["PVSIGNAL_OIDC_CLIENT_SECRET"] == {
        "name": SECRET,
        "key": "oidc-client-secret",
        "optional": True,
    }
    names = {f"PVSIGNAL_{k.upper()}" for k in Settings.model_fields}
    signin = {k for k in [*env, *refs] if k.startswith(("PVSIGNAL_OIDC_", "PVSIGNAL_UI_"))}
    assert signin <= names
    assert len(signin) == 8  # issuer, audience, JWKS, 2 claims, client id and secret, session

    # The chart's own Secret: the client secret as given, required.
    own = copy.deepcopy(PRODUCTION)
    own["secrets"] = {
        "existingSecret": "",
        "secretKey": "k" * 32,
        "storeUrl": "postgresql://pv@db/pv",
        "kafkaSaslPassword": "sasl",
        "oidcClientSecret": "s3cret-of-the-client",
    }
    manifests = render(chart, own)
    secret = by_kind(manifests, "Secret")["pv-pvsignal"]["stringData"]
    assert secret["oidc-client-secret"] == "s3cret-of-the-client"
    refs = _secret_refs(_container(manifests))
    assert refs["PVSIGNAL_OIDC_CLIENT_SECRET"] == {
        "name": "pv-pvsignal",
        "key": "oidc-client-secret",
    }
    # Without a client id: no sign-in at the issuer, no client secret in the pods.
    default = render(chart, None)
    env = by_kind(default, "ConfigMap")["pv-pvsignal-env"]["data"]
    assert "PVSIGNAL_OIDC_CLIENT_ID" not in env and env["PVSIGNAL_UI_SESSION_MINUTES"] == "480"
    assert all(e["name"] != "PVSIGNAL_OIDC_CLIENT_SECRET" for e in _container(default)["env"])


def test_notes_say_the_partition_limit(chart):
    text = notes(chart, PRODUCTION)
    assert "consumer.replicas <= the topic's partitions (kafka.partitions = 6)" in text


def _with(path: str, value):
    values: dict = {}
    node = values
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return values


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("kafka.securityProtocol", "TLS"),
        ("kafka.sasl.mechanism", "GSSAPI"),
        ("store.type", "mysql"),
        ("api.replicas", 0),
        ("api.port", "8000"),
        ("consumer.metricsPort", 80),
        ("environment", "staging"),
        ("secrets.secretKey", "too-short"),
        ("secrets.storeUrl", "mysql://db/pv"),
        ("api.unknownKey", True),
        ("oidc.sessionMinutes", 0),
        ("oidc.roleClaim", ""),
        ("secrets.oidcClientSecret", 42),
        ("image.pullPolicy", "Sometimes"),
        ("monitoring.serviceMonitor.interval", "soon"),
        ("registries.products", [{**PRODUCTION["registries"]["products"][0], "pathway": "pilot"}]),
        ("registries.products", [{"product_id": "P-2", "names": ["x"], "kind": "drug"}]),
        ("registries.products", [{**PRODUCTION["registries"]["products"][0], "names": []}]),
    ],
)
def test_schema_refuses_wrong_values(chart, path, value):
    values = _with(path, value)
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name="pv")


def test_the_schema_knows_the_product_registry():
    """values.schema.json describes a registry entry as pvsignal reads it, so that a wrong
    entry is refused by the chart, not by the products-load hook Job during the install."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    product = schema["properties"]["registries"]["properties"]["products"]["items"]
    model = RegisteredProduct.model_json_schema()
    assert set(product["properties"]) == set(model["properties"])
    assert set(product["required"]) == set(model["required"])
    assert product["properties"]["kind"]["enum"] == [k.value for k in Kind]
    assert product["properties"]["pathway"]["enum"] == [p.value for p in Pathway]
    for entry in PRODUCTION["registries"]["products"]:
        RegisteredProduct.model_validate(entry)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"consumer": {"replicas": 4}, "kafka": {"partitions": 3}}, "exceeds kafka.partitions"),
        ({"kafka": {"securityProtocol": "SASL_SSL"}}, "needs kafka.sasl.mechanism"),
        ({"kafka": {"sasl": {"mechanism": "PLAIN"}}}, "kafka.sasl.mechanism is set"),
        ({"store": {"type": "sqlite"}}, "store.type sqlite"),
        ({"kafka": {"tls": {"clientCertificate": True}}}, "needs kafka.tls.secret"),
        ({"oidc": {"clientId": "pvsignal-dashboard"}}, "oidc.clientId"),
        (
            {
                "oidc": {"issuer": "https://login.example.org"},
                "secrets": {"oidcClientSecret": "x"},
            },
            "secrets.oidcClientSecret is set but oidc.clientId is not",
        ),
    ],
)
def test_combinations_the_schema_cannot_express_are_refused(chart, values, message):
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        chart.render(values, name="pv")


def test_every_values_key_is_commented_with_its_name():
    """Each key of values.yaml has a comment above it that starts with its dotted name (keys of
    the Kubernetes objects passed through as they are excepted)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    passthrough = ("resources", "podSecurityContext", "securityContext")
    stack: list[tuple[int, str]] = []
    missing = []
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        stack = [(i, k) for i, k in stack if i < indent]
        parents = [k for _, k in stack]
        stack.append((indent, key))
        if any(p in passthrough for p in parents):
            continue
        dotted = ".".join([*parents, key])
        first = number  # the first line of the comment block above the key
        while first > 0 and lines[first - 1].strip().startswith("#"):
            first -= 1
        comment = lines[first].strip() if first < number else ""
        if not comment.startswith(f"# {dotted} "):
            missing.append(dotted)
    assert missing == []
