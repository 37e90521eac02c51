"""The detection workers: one single-replica Deployment per shard, off by default."""

from __future__ import annotations

import copy

import helm_python as helm
import kubernetes_validate
import pytest

from tests.helm.conftest import PRODUCTION, by_kind, render, trial_values


def _sharded(shards: int) -> dict:
    values = copy.deepcopy(PRODUCTION)
    values["detect"] = {"enabled": True, "shards": shards, "intervalSeconds": 2}
    return values


def test_detection_workers_are_off_by_default(chart):
    deployments = by_kind(render(chart, PRODUCTION), "Deployment")
    assert not [name for name in deployments if "detect" in name]
    consumer = deployments["pv-pvsignal-consumer"]["spec"]["template"]["spec"]["containers"][0]
    assert "--no-detect" not in consumer["args"]


def test_each_shard_is_one_locked_down_deployment_and_the_consumer_stops_detecting(chart):
    manifests = render(chart, _sharded(3))
    deployments = by_kind(manifests, "Deployment")
    workers = {name: d for name, d in deployments.items() if "-detect-" in name}
    assert set(workers) == {f"pv-pvsignal-detect-{k}" for k in range(3)}
    for k in range(3):
        worker = workers[f"pv-pvsignal-detect-{k}"]
        kubernetes_validate.validate(worker, "1.30.0", strict=True)
        spec = worker["spec"]
        # One holder per shard: a single replica, replaced rather than rolled (the store's
        # lease fences an overlap anyway).
        assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
        assert spec["selector"]["matchLabels"]["pvsignal.io/shard"] == str(k)
        container = spec["template"]["spec"]["containers"][0]
        assert container["args"][:5] == ["detect", "--shard", f"{k}/3", "--interval", "2"]
        assert "--scope-config" in container["args"]  # the production set has scopes
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    consumer = deployments["pv-pvsignal-consumer"]["spec"]["template"]["spec"]["containers"][0]
    assert "--no-detect" in consumer["args"]
    assert (
        by_kind(manifests, "ConfigMap")["pv-pvsignal-env"]["data"]["PVSIGNAL_DETECT_IN_PROCESS"]
        == "false"
    )


def test_detection_workers_need_the_shared_store(chart):
    with pytest.raises(helm.HelmRenderError, match="use store.type postgresql"):
        chart.render({**trial_values(), "detect": {"enabled": True}}, name="pv")


@pytest.mark.parametrize("shards", [0, "two"])
def test_the_schema_refuses_a_bad_shard_count(chart, shards):
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"detect": {"enabled": True, "shards": shards}})
