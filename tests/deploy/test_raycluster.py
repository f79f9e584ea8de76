"""The KubeRay RayCluster for simnet's Ray backend, checked offline.

RayCluster is a custom resource (ray.io/v1), so kubernetes-validate has no schema for it.
What is checked: every pod template in it (head and worker groups) validates strictly against
the Kubernetes 1.30 schemas, as a core ``PodTemplate``; the RayCluster's own fields are the
ones KubeRay's v1 API defines, with the types it expects (checked by hand below, not against
the operator's CRD); and the Ray version matches the ``edgenode[ray]`` pin.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "k8s" / "ray" / "raycluster.yaml"
K8S_VERSION = "1.30.0"

SPEC_FIELDS = {"rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec", "workerGroupSpecs",
               "headServiceAnnotations", "suspend", "managedBy", "gcsFaultToleranceOptions"}  # fmt: skip
HEAD_FIELDS = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_FIELDS = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template",
                 "idleTimeoutSeconds", "scaleStrategy", "suspend", "numOfHosts"}  # fmt: skip


def _cluster() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    assert isinstance(doc, dict)
    return doc


def _templates(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = doc["spec"]
    out = [("head", spec["headGroupSpec"]["template"])]
    out += [(w["groupName"], w["template"]) for w in spec["workerGroupSpecs"]]
    return out


def _as_pod_template(doc: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": doc["metadata"]["name"], "namespace": doc["metadata"]["namespace"]},
        "template": copy.deepcopy(template),
    }


@pytest.mark.parametrize("group", ["head", "nodes"])
def test_pod_templates_validate_against_kubernetes_schemas(group: str) -> None:
    doc = _cluster()
    template = dict(_templates(doc))[group]
    kubernetes_validate.validate(_as_pod_template(doc, template), K8S_VERSION, strict=True)


def test_pod_template_validation_is_real() -> None:
    doc = _cluster()
    template = dict(_templates(doc))["nodes"]
    template["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(_as_pod_template(doc, template), K8S_VERSION, strict=True)


def test_raycluster_fields_are_kuberay_v1() -> None:
    doc = _cluster()
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    spec = doc["spec"]
    assert set(spec) <= SPEC_FIELDS, set(spec) - SPEC_FIELDS
    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_FIELDS, set(head) - HEAD_FIELDS
    groups = [head, *spec["workerGroupSpecs"]]
    for w in spec["workerGroupSpecs"]:
        assert set(w) <= WORKER_FIELDS, set(w) - WORKER_FIELDS
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", w["groupName"])
        assert all(isinstance(w[k], int) for k in ("replicas", "minReplicas", "maxReplicas"))
        assert w["minReplicas"] <= w["replicas"] <= w["maxReplicas"]
    for g in groups:
        # KubeRay passes rayStartParams to `ray start` as --key=value: a map of strings
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in g["rayStartParams"].items())
        assert g["rayStartParams"]["object-store-memory"] == "200000000"  # small, as simnet's local instance
        for c in g["template"]["spec"]["containers"]:
            env = {e["name"]: e["value"] for e in c["env"]}
            assert env["RAY_USAGE_STATS_ENABLED"] == "0"
            assert env["TMPDIR"] == "/var/lib/edgenode"  # the node groups' ledgers go on the mounted volume
            assert any(m["mountPath"] == "/var/lib/edgenode" for m in c["volumeMounts"])
    assert head["rayStartParams"]["include-dashboard"] == "false"


def test_ray_version_is_the_pinned_extra() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = [r for r in extras["ray"] if r.startswith("ray")]
    assert pin == f"ray=={_cluster()['spec']['rayVersion']}"
