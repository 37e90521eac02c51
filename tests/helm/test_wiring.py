"""The chart's wiring, run for real: the production set's containers started as local processes.

Each rendered container becomes a process the way the kubelet would start it, from the rendered
manifests alone: the image's ENTRYPOINT (read from the Dockerfile) followed by the container's
args, the environment resolved from the rendered ConfigMaps and the Secrets the values name,
every volume mounted as a local folder (the paths in args and environment rewritten to it), and
every ``containerPort`` given a free port of this machine (a pod has a network of its own; the
probes are looked up through the same mapping). The store URL is a fresh database of the test's
PostgreSQL (it comes through the synthesised ``existingSecret``), the Kafka bootstrap the test's
Tansu broker. The hook Jobs run in Helm's order and must exit 0; then the consumer and the API
must pass their readiness probes, and reports produced to the rendered topic must come out of
``GET /v1/signals``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaProducer

from streams.cli import STARTED
from tests.helm.conftest import CHART, PRODUCTION, SECRET, by_kind, option, render
from tests.support.kafka import create_topic, tansu_broker
from tests.support.postgres import create_database, free_port

ROOT = CHART.parents[1]
# The image's `pvsignal` console script is this checkout's CLI, run by this interpreter.
BINARIES = {"pvsignal": [sys.executable, "-m", "pvsignal.cli"]}
# Generous bounds for a loaded machine. Tansu takes about half the session timeout to let a
# consumer join its group (tests/support/kafka.py), and the chart keeps kafka-python's 45 s.
JOB_SECONDS = 300
READY_SECONDS = 240
SIGNAL_SECONDS = 240
STOP_SECONDS = 60  # the consumer's terminationGracePeriodSeconds

# What is produced to the topic: one product of the production set's registry, by one of its
# names, with one event, and a little background so the detector has a table to fit.
PRODUCT_NAME, PRODUCT_ID, PT = "Examplomab", "P-1", "Hepatic failure"
REGION = "CN-LN"  # in the production set's scope "north"
BACKGROUND = [("paracetamol", "Nausea"), ("ibuprofen", "Rash"), ("amoxicillin", "Diarrhoea")]


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """A broker of this module's own: the rendered topic and group names are fixed
    (pvsignal.reports, group pvsignal), so no other test may share them."""
    with tansu_broker() as bootstrap:
        yield bootstrap


# -- the image --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    entrypoint: list[str]
    env: dict[str, str]


def image() -> Image:
    """The runtime stage's ENTRYPOINT and ENV, read from the Dockerfile."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.rsplit("\nFROM ", 1)[1]
    entrypoint: list[str] = []
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    assert entrypoint, "the Dockerfile's runtime stage has no exec-form ENTRYPOINT"
    return Image(entrypoint, env)


# -- the namespace: what references resolve against -----------------------------------------


@dataclass(frozen=True)
class Namespace:
    """The ConfigMaps and Secrets a pod can reference: the rendered ones, and the Secrets the
    production values name but leave to the operator (``existingSecret``, TLS material)."""

    config_maps: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, str]]

    def data(self, kind: str, name: str, *, optional: bool = False) -> dict[str, str] | None:
        objects = self.config_maps if kind == "configMap" else self.secrets
        if name not in objects:
            # The kubelet would not start the container (CreateContainerConfigError).
            assert optional, f"{kind} {name!r} does not exist in the namespace"
            return None
        return objects[name]


def namespace(
    manifests: list[dict[str, Any]], operator_secrets: dict[str, dict[str, str]]
) -> Namespace:
    config_maps = {name: m.get("data", {}) for name, m in by_kind(manifests, "ConfigMap").items()}
    rendered = {
        name: {
            **{key: base64.b64decode(value).decode() for key, value in m.get("data", {}).items()},
            **m.get("stringData", {}),
        }
        for name, m in by_kind(manifests, "Secret").items()
    }
    return Namespace(config_maps, {**rendered, **operator_secrets})


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) references (left as they are when VAR is not defined; $$ is $)."""
    return _REFERENCE.sub(
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text
    )


def environment(container: dict[str, Any], ns: Namespace) -> dict[str, str]:
    """The container's environment as the kubelet builds it: ``envFrom`` first, then ``env``
    (which wins), each ``value`` with its $(VAR) references expanded."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind = "configMap" if "configMapRef" in source else "secret"
        ref = source[f"{kind}Ref"]
        data = ns.data(kind, ref["name"], optional=ref.get("optional", False)) or {}
        env.update({source.get("prefix", "") + key: value for key, value in data.items()})
    for var in container.get("env", []):
        if "valueFrom" not in var:
            env[var["name"]] = _expand(var.get("value", ""), env)
            continue
        ((kind_ref, ref),) = var["valueFrom"].items()
        kind = {"configMapKeyRef": "configMap", "secretKeyRef": "secret"}[kind_ref]
        optional = ref.get("optional", False)
        data = ns.data(kind, ref["name"], optional=optional) or {}
        if ref["key"] in data:
            env[var["name"]] = data[ref["key"]]
        else:
            assert optional, f"{var['name']}: {kind} {ref['name']!r} has no key {ref['key']!r}"
    return env


def mount(
    pod: dict[str, Any], container: dict[str, Any], ns: Namespace, root: Path
) -> dict[str, Path]:
    """Each volume mount as a local folder (ConfigMap and Secret keys as files, an emptyDir
    empty): the mount paths and the folders standing for them."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for volume_mount in container.get("volumeMounts", []):
        assert "subPath" not in volume_mount, "subPath mounts are not reproduced here"
        volume = volumes[volume_mount["name"]]
        if "configMap" in volume:
            source = volume["configMap"]
            files = ns.data("configMap", source["name"], optional=source.get("optional", False))
        elif "secret" in volume:
            source = volume["secret"]
            files = ns.data("secret", source["secretName"], optional=source.get("optional", False))
        else:
            assert "emptyDir" in volume, f"volume {volume_mount['name']}: not reproduced here"
            source, files = {}, {}
        paths = {item["key"]: item["path"] for item in source.get("items", [])} or None
        local = root / volume_mount["name"]
        local.mkdir(parents=True)
        for key, text in (files or {}).items():
            if paths is None or key in paths:
                target = local / (paths[key] if paths else key)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        mounts[volume_mount["mountPath"]] = local
    return mounts


def _localise(value: str, mounts: dict[str, Path]) -> str:
    """A path under a mount, rewritten to the folder standing for it."""
    for path in sorted(mounts, key=len, reverse=True):
        if value == path or value.startswith(path.rstrip("/") + "/"):
            return str(mounts[path]) + value[len(path) :]
    return value


# -- a container as a local process ---------------------------------------------------------


@dataclass
class Launch:
    """How to start one rendered container here."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[str | int, int]  # container port name and number -> the local port
    container: dict[str, Any]

    def probe(self, kind: str) -> str:
        """The URL of the container's ``kind`` probe (readinessProbe...) on this machine."""
        get = self.container[kind]["httpGet"]
        return f"http://127.0.0.1:{self.ports[get['port']]}{get['path']}"


def launch(workload: dict[str, Any], ns: Namespace, root: Path, image_: Image) -> Launch:
    """The workload's one container, resolved: argv, environment, mounts and ports."""
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    name = workload["metadata"]["name"]
    env = environment(container, ns)
    mounts = mount(pod, container, ns, root / name / "volumes")
    # The container's command replaces the image's ENTRYPOINT; its args follow either.
    argv = [_expand(a, env) for a in container.get("command", image_.entrypoint)]
    argv += [_expand(a, env) for a in container.get("args", [])]
    ports: dict[str | int, int] = {}
    for port in container.get("ports", []):
        local = free_port()
        number = str(port["containerPort"])
        options = [
            i for i, a in enumerate(argv[:-1]) if a.endswith("-port") and argv[i + 1] == number
        ]
        assert options, f"{name}: nothing in {argv} listens on containerPort {number}"
        for i in options:
            argv[i + 1] = str(local)
        ports[port["name"]] = ports[port["containerPort"]] = local
    argv = [_localise(a, mounts) for a in argv]
    env = {key: _localise(value, mounts) for key, value in env.items()}
    binary = BINARIES[argv[0]]
    return Launch(name, [*binary, *argv[1:]], env, ports, container)


def on_this_machine(launched: Launch, store_url: str, broker: str) -> Launch:
    """Hosts pointed at the test's servers. The store URL already is the test database's (it
    comes from the synthesised Secret); the Kafka bootstrap is the test's broker.

    The test's Tansu broker speaks PLAINTEXT only, so the production set's Kafka security
    settings (PVSIGNAL_KAFKA_SECURITY_PROTOCOL and the PVSIGNAL_KAFKA_SSL_* / _SASL_* settings)
    are the one thing overridden: PLAINTEXT, without them. Their wiring (the SASL password from
    the Secret, the TLS files where the Secret is mounted) is checked before they go.
    """
    env = dict(launched.env)
    assert env.get("PVSIGNAL_STORE_URL") == store_url, launched.name
    if "PVSIGNAL_KAFKA_BOOTSTRAP" in env:
        assert env["PVSIGNAL_KAFKA_BOOTSTRAP"] == PRODUCTION["kafka"]["bootstrap"]
        env["PVSIGNAL_KAFKA_BOOTSTRAP"] = broker
    if "PVSIGNAL_KAFKA_SECURITY_PROTOCOL" in env:
        assert env["PVSIGNAL_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["PVSIGNAL_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert (
            env["PVSIGNAL_KAFKA_SASL_PASSWORD"] == OPERATOR_SECRETS[SECRET]["kafka-sasl-password"]
        )
        for name in ("CAFILE", "CERTFILE", "KEYFILE"):
            assert Path(env[f"PVSIGNAL_KAFKA_SSL_{name}"]).is_file(), name
        security = [k for k in env if re.match(r"PVSIGNAL_KAFKA_(SSL|SASL)_", k)]
        env = {k: v for k, v in env.items() if k not in security}
        env["PVSIGNAL_KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"
    security_options = [a for a in launched.argv if re.match(r"--(ssl|sasl|security)-", a)]
    assert security_options == [], "Kafka security in args: the override above would miss it"
    return Launch(launched.name, launched.argv, env, launched.ports, launched.container)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> None:
        code = self.popen.poll()
        assert code is None, f"{self.name} exited with {code}:\n{self.output()[-4000:]}"


def start(launched: Launch, root: Path, image_: Image) -> Process:
    """Start the container as a process: the image's environment under the container's, the
    working directory a folder of its own, stdout and stderr to a file (never a pipe that
    could fill)."""
    workdir = root / launched.name / "workdir"
    workdir.mkdir(parents=True, exist_ok=True)
    local = {"PATH": os.environ["PATH"], "HOME": str(workdir), "PYTHONPATH": str(ROOT)}
    log = root / launched.name / "output.log"
    with log.open("wb") as output:
        popen = subprocess.Popen(
            launched.argv,
            cwd=workdir,
            env={**local, **image_.env, **launched.env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return Process(launched.name, popen, log)


def stop(process: Process) -> int:
    """SIGTERM, as the kubelet sends it; SIGKILL after the grace period."""
    if process.popen.poll() is None:
        process.popen.terminate()
    try:
        return process.popen.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.popen.kill()
        return process.popen.wait()


def wait_until(condition, processes: list[Process], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail at once if one of the processes exits, and show
    their output when time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        for process in processes:
            process.alive()
        if condition():
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}:\n{p.output()[-4000:]}" for p in processes)
            pytest.fail(f"{what}: not within {seconds} s\n{logs}")
        time.sleep(0.2)


def answers_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


# -- the test ---------------------------------------------------------------------------------

# The Secrets the production values name and an operator creates: existingSecret (the test
# database's URL is filled in per run), the PostgreSQL CA and the Kafka TLS material. The TLS
# files only need to exist: the test's PostgreSQL and broker use no TLS.
OPERATOR_SECRETS = {
    SECRET: {
        "secret-key": secrets.token_urlsafe(36),
        "kafka-sasl-password": secrets.token_urlsafe(18),
        # kafka-ssl-key-password left out: the chart marks it optional.
    },
    PRODUCTION["store"]["tls"]["caSecret"]: {"ca.crt": "unused: the test's PostgreSQL is plain\n"},
    PRODUCTION["kafka"]["tls"]["secret"]: {
        name: "unused: the test's broker is PLAINTEXT\n"
        for name in ("ca.crt", "tls.crt", "tls.key")
    },
}


def _reports() -> list[tuple[bytes, bytes]]:
    def report(case_id: str, product: str, pt: str) -> tuple[bytes, bytes]:
        value = {
            "case_id": case_id,
            "report_id": case_id,
            "received": "2026-03-01",
            "region": REGION,
            "products": [{"name": product, "role": "suspect"}],
            "reactions": [{"pt": pt}],
        }
        return case_id.encode(), orjson.dumps(value)

    found = [report(f"WIRING-{i}", PRODUCT_NAME, PT) for i in range(5)]
    for product, pt in BACKGROUND:
        found += [report(f"WIRING-{product}-{i}", product, pt) for i in range(5)]
    return found


def test_the_production_set_runs_as_local_processes(chart, postgres_server, broker, tmp_path):
    manifests = render(chart, PRODUCTION)
    store_url = create_database(postgres_server, f"wiring_{uuid.uuid4().hex[:8]}")
    operator = {**OPERATOR_SECRETS, SECRET: {**OPERATOR_SECRETS[SECRET], "store-url": store_url}}
    ns = namespace(manifests, operator)
    image_ = image()

    def prepared(workload: dict[str, Any]) -> Launch:
        return on_this_machine(launch(workload, ns, tmp_path, image_), store_url, broker)

    deployments = by_kind(manifests, "Deployment")
    consumer = prepared(deployments["pv-pvsignal-consumer"])
    api = prepared(deployments["pv-pvsignal-api"])
    topic = option(consumer.argv, "--topic")
    assert topic == api.env["PVSIGNAL_KAFKA_TOPIC"]
    # The operator creates the topics (the chart does not): reports with kafka.partitions.
    create_topic(broker, topic, partitions=PRODUCTION["kafka"]["partitions"])
    for name in ("--dlq-topic", "--alerts-topic"):
        create_topic(broker, option(consumer.argv, name))

    processes: list[Process] = []
    try:
        # The hooks, in Helm's order (weight, then name): the migration first, then the loads.
        jobs = sorted(
            by_kind(manifests, "Job").values(),
            key=lambda j: (int(j["metadata"]["annotations"]["helm.sh/hook-weight"]),
                           j["metadata"]["name"]),
        )  # fmt: skip
        assert jobs[0]["metadata"]["name"] == "pv-pvsignal-migrate"
        for job in jobs:
            process = start(prepared(job), tmp_path, image_)
            processes.append(process)
            try:
                code = process.popen.wait(timeout=JOB_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{process.name} still running after {JOB_SECONDS} s")
            assert code == 0, f"{process.name} exited with {code}:\n{process.output()}"

        # The Deployments, both at once: neither waits for the other.
        running = {launched.name: launched for launched in (consumer, api)}
        started = {name: start(launched, tmp_path, image_) for name, launched in running.items()}
        processes += started.values()
        reader, server = started["pv-pvsignal-consumer"], started["pv-pvsignal-api"]
        both = [reader, server]
        wait_until(lambda: STARTED in reader.output(), both, READY_SECONDS, "the ready line")
        for name, launched in running.items():
            url = launched.probe("readinessProbe")
            wait_until(lambda url=url: answers_200(url), both, READY_SECONDS, f"{name} {url}")
        base = f"http://127.0.0.1:{api.ports['http']}"

        # A regulator key, made as an operator would in the API's pod.
        made = subprocess.run(
            [*BINARIES["pvsignal"], "keys", "create", "--store", store_url, "--role", "regulator"],
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **image_.env, **api.env},
            capture_output=True,
            text=True,
            timeout=JOB_SECONDS,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()

        producer = KafkaProducer(bootstrap_servers=broker, acks="all")
        try:
            sent = [
                producer.send(
                    topic, key=k, value=v, headers=[("content-type", b"application/json")]
                )
                for k, v in _reports()
            ]
            producer.flush()
            for future in sent:
                future.get(timeout=60)
        finally:
            producer.close()

        wanted = sum(1 for _, value in _reports() if PRODUCT_NAME.encode() in value)
        listed: dict[str, list[dict[str, Any]]] = {}

        def everything_arrived() -> bool:
            """Every report applied (the API's view of the stored offsets), and the pair
            listed with all of its reports in "all" and in "north" (the scopes file reached
            the consumer and the API). Batches and detector runs may show it earlier with
            fewer: that is waited out, not failed on."""
            readiness = httpx.get(f"{base}/readyz", timeout=10).json()
            assert readiness["kafka"]["topic"] == topic
            if sum(readiness["kafka"]["next_offsets"].values()) < len(_reports()):
                return False
            for scope in ("all", "north"):
                answer = httpx.get(
                    f"{base}/v1/signals",
                    params={"scope": scope, "product_id": PRODUCT_ID, "pt": PT},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=10,
                )
                assert answer.status_code == 200, answer.text
                listed[scope] = answer.json()["signals"]
            return all(rows and rows[0]["a"] == wanted for rows in listed.values())

        wait_until(everything_arrived, both, SIGNAL_SECONDS, f"{PRODUCT_ID} / {PT} listed")
        for scope, rows in listed.items():
            (row,) = rows
            assert (row["scope"], row["product_id"], row["pt"]) == (scope, PRODUCT_ID, PT)
            assert row["product"]["mah_id"] == "MAH-A"  # registered by the products-load hook
        # SIGTERM: the consumer finishes its batch, checkpoints and exits 0 within its grace.
        assert stop(reader) == 0, reader.output()
    finally:
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                stop(process)
