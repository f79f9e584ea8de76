"""Kubernetes/k3s manifests (validated offline against the Kubernetes schemas) and the compose file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "deploy" / "compose" / "compose.yaml"
K8S_VERSION = "1.30.0"  # k3s stable at the time of writing; the schemas ship with kubernetes-validate


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(K8S.glob("*.yaml")) for d in _docs(p)]


@pytest.mark.parametrize(("name", "doc"), _all_docs(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_manifest_validates_against_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validation_is_real() -> None:
    """A misspelled field is rejected in strict mode."""
    (ds,) = [d for _, d in _all_docs() if d["kind"] == "DaemonSet"]
    ds["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)


def _kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in _all_docs() if d["kind"] == kind]
    return doc


def test_daemonset_runs_one_hardened_node_per_edge_host() -> None:
    ds = _kind("DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["edgenode.io/edge"] == "true"
    assert pod["hostNetwork"] is True
    (c,) = pod["containers"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["limits"]["memory"] == "512Mi"
    # The identity survives pod restarts: the home is on the host.
    home = next(v for v in pod["volumes"] if v["name"] == "home")
    assert home["hostPath"]["path"] == "/var/lib/edgenode"


def test_statefulset_swarm_bootstraps_from_pod_zero() -> None:
    sts = _kind("StatefulSet")
    svc = _kind("Service")
    assert svc["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["replicas"] >= 10
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    ns = sts["metadata"]["namespace"]
    assert (
        env["EDGENODE_BOOTSTRAP_HOST"]["value"]
        == f"{sts['metadata']['name']}-0.{svc['metadata']['name']}.{ns}.svc.cluster.local"
    )
    assert env["EDGENODE_BOOTSTRAP_PEER"]["valueFrom"]["secretKeyRef"]["name"] == "edgenode-bootstrap"
    assert svc["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]


def test_compose_file_structure() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert set(services) == {"bootstrap", "peer"}
    boot, peer = services["bootstrap"], services["peer"]
    # Every service resolves its image, networks and volumes to top-level definitions.
    for svc in services.values():
        assert svc["image"].startswith("${EDGENODE_IMAGE:-edgenode:")
        assert set(svc["networks"]) <= set(doc["networks"])
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source")
            assert source in doc["volumes"], source
        assert svc["cap_drop"] == ["ALL"] and svc["read_only"] is True
    assert peer["depends_on"]["bootstrap"]["condition"] == "service_healthy"
    assert "healthcheck" in boot
    # The peers read the peer id file the bootstrap writes, on the same shared volume.
    out = boot["environment"]["EDGENODE_PEER_ID_OUT"]
    assert peer["environment"]["EDGENODE_BOOTSTRAP_PEER_FILE"] == out
    assert peer["environment"]["EDGENODE_BOOTSTRAP_HOST"] == "bootstrap"
    assert peer["deploy"]["replicas"] >= 2


@pytest.mark.parametrize(
    ("dockerfile", "context"),
    [
        (REPO / "deploy" / "container" / "Dockerfile", REPO / "deploy" / "container"),
        (REPO / "firmware" / "jetson" / "Dockerfile.l4t", REPO),
    ],
    ids=["container", "jetson-l4t"],
)
def test_dockerfile_copies_files_that_exist(dockerfile: Path, context: Path) -> None:
    """Every COPY source is in the build context, except the wheel directories users fill in."""
    user_filled = {"wheels", "ort"}
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from=") for w in words):
            sources.extend(words[1:-1])
    assert sources
    for src in sources:
        if src.rstrip("/").rsplit("/", 1)[-1] in user_filled:
            assert (context / src).parent.is_dir(), src
            continue
        assert (context / src).exists(), src
