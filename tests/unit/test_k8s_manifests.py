"""Every manifest under deploy/k8s validates against the Kubernetes JSON schemas.

* Built-in kinds: ``kubernetes-validate`` (PyPI; ships the schemas of Kubernetes 1.25-1.37, works
  offline) in strict mode, so unknown fields (a misspelt ``readinesProbe``) fail as well as wrong
  types and missing required fields. Without it the tests skip locally and fail in CI.
* The KEDA ScaledObject (a CRD, not in those schemas): a hand-written schema of the subset used,
  ``tests/unit/data/keda-scaledobject-v1alpha1.schema.json`` (unknown fields rejected, the kafka
  trigger's metadata checked), plus its HPA ``behavior`` against Kubernetes' own schema.
* ``kustomization.yaml``: its resources exist and every manifest is either listed or is a
  template/extra; when ``kubectl`` is on PATH, ``kubectl kustomize`` renders it and the rendered
  objects are validated too (namespace, labels, image and replacements applied).
* Cross-references and the decisions of the design: args per role, probes on 8080, security
  context, grace period, KEDA trigger on the classifier's group and topics.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ci import missing, schema_dependency

jsonschema = schema_dependency("jsonschema")
yaml = schema_dependency("yaml")


ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_SCHEMA = Path(__file__).parent / "data" / "keda-scaledobject-v1alpha1.schema.json"
KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes the manifests are meant for
PACKAGE = "kubernetes-validate"
ROLES = ("classifier", "projector", "responder")

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def kv() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        message = f"kubernetes-validate is not installed (dev dependency {PACKAGE!r})"
        missing(message)
    return kubernetes_validate


def _manifest_files() -> list[Path]:
    return sorted(
        p for p in K8S.rglob("*.yaml") if p.name not in ("kustomization.yaml", "kustomization.yml")
    )


def _documents(path: Path) -> Iterator[Manifest]:
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc is not None:
            yield doc


def _all() -> list[tuple[str, Manifest]]:
    return [
        (f"{path.relative_to(K8S)}#{i}", doc)
        for path in _manifest_files()
        for i, doc in enumerate(_documents(path))
    ]


def _kustomization() -> Manifest:
    loaded: Manifest = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    return loaded


def _validate_builtin(kv: Any, doc: Manifest) -> None:
    kv.validate(doc, KUBERNETES_VERSION, strict=True)


def _keda_validator() -> Any:
    schema = json.loads(KEDA_SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate_scaledobject(kv: Any, doc: Manifest) -> None:
    errors = sorted(_keda_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        raise jsonschema.ValidationError(
            "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
        )
    behavior = doc["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
    if "behavior" in behavior:
        # KEDA passes it to the HPA it creates: Kubernetes' own schema applies.
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "keda-hpa-check"},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "x"},
                "maxReplicas": 1,
                "behavior": behavior["behavior"],
            },
        }
        _validate_builtin(kv, hpa)


def _validate(kv: Any, doc: Manifest) -> None:
    if doc.get("apiVersion") == "keda.sh/v1alpha1":
        _validate_scaledobject(kv, doc)
    else:
        _validate_builtin(kv, doc)


# --- schema validation


@pytest.mark.parametrize(("name", "doc"), _all(), ids=[name for name, _ in _all()])
def test_each_manifest_validates_against_the_kubernetes_schemas(
    kv: Any, name: str, doc: Manifest
) -> None:
    _validate(kv, doc)


def test_there_are_manifests_of_every_expected_kind() -> None:
    kinds = {doc["kind"] for _, doc in _all()}
    expected = {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ScaledObject",
    }
    assert expected <= kinds, expected - kinds


BREAKAGES = {
    "misspelt field": lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
        readinesProbe=d["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    ),
    "wrong type": lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(
        containerPort="eighty"
    ),
    "missing required field": lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
    "args as one string": lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
        args="run classifier"
    ),
    "mapping where a list belongs": lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
        envFrom={"configMapRef": {"name": "genres-config"}}
    ),
}


SCALEDOBJECT_BREAKAGES = {
    "misspelt spec field": lambda d: d["spec"].update(maxReplicas=d["spec"].pop("maxReplicaCount")),
    "lag threshold not a number": lambda d: d["spec"]["triggers"][0]["metadata"].update(
        lagThreshold="lots"
    ),
    "unknown kafka metadata": lambda d: d["spec"]["triggers"][0]["metadata"].update(
        consumergroup="genres-classifier"
    ),
    "no consumer group": lambda d: d["spec"]["triggers"][0]["metadata"].pop("consumerGroup"),
    "no scale target": lambda d: d["spec"].pop("scaleTargetRef"),
    "bad HPA behavior": lambda d: d["spec"]["advanced"]["horizontalPodAutoscalerConfig"][
        "behavior"
    ]["scaleDown"]["policies"][0].update(value="one"),
}


BREAKAGES_BY_MANIFEST = {
    "classifier-deployment.yaml": BREAKAGES,
    "keda-scaledobject.yaml": SCALEDOBJECT_BREAKAGES,
}


@pytest.mark.parametrize(
    ("manifest", "breakage"),
    [(name, b) for name, breakages in BREAKAGES_BY_MANIFEST.items() for b in sorted(breakages)],
)
def test_a_broken_manifest_is_caught(kv: Any, manifest: str, breakage: str) -> None:
    doc = copy.deepcopy(next(iter(_documents(K8S / manifest))))
    _validate(kv, doc)
    BREAKAGES_BY_MANIFEST[manifest][breakage](doc)
    with pytest.raises(jsonschema.ValidationError):
        _validate(kv, doc)


# --- kustomize


def test_kustomization_lists_existing_files_and_every_applied_manifest() -> None:
    resources = _kustomization()["resources"]
    for resource in resources:
        assert (K8S / resource).is_file(), resource
    listed = set(resources)
    # Templates and alternatives that `kubectl apply -k` must not apply.
    not_applied = {"secret.example.yaml"}
    for path in _manifest_files():
        relative = str(path.relative_to(K8S))
        if relative.startswith("extras/") or relative in not_applied:
            assert relative not in listed, f"{relative} must not be applied by kustomize"
        else:
            assert relative in listed, f"{relative} is not in kustomization.yaml"


@pytest.fixture(scope="module")
def rendered() -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH (its built-in kustomize renders deploy/k8s)")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def test_rendered_kustomization_is_valid(kv: Any, rendered: list[Manifest]) -> None:
    for doc in rendered:
        _validate(kv, doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "genres", doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "genres"
    config = next(d for d in rendered if d["kind"] == "ConfigMap")
    scaled = next(d for d in rendered if d["kind"] == "ScaledObject")
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["metadata"]["bootstrapServers"] == config["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    for deployment in (d for d in rendered if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["image"].rsplit(":", 1)[0].endswith("/genres"), container["image"]


# --- the design's decisions


def _by_kind_and_name() -> dict[tuple[str, str], Manifest]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in _all()}


@pytest.mark.parametrize("role", ROLES)
def test_deployment_runs_its_role_safely(role: str) -> None:
    objects = _by_kind_and_name()
    deployment = objects[("Deployment", f"genres-{role}")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["run", role]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert sources == {"genres-config", "genres-secrets"}
    assert {"requests", "limits"} <= container["resources"].keys()
    # Security: non-root, read-only root with a writable /tmp, no capabilities, seccomp.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for each in pod["containers"] + pod.get("initContainers", []):
        context = each["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {m["mountPath"] for m in each["volumeMounts"]} == {"/tmp"}
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    # Migrations before the role starts.
    assert [c["args"] for c in pod["initContainers"]] == [["migrate"]]
    # Selectors match pod labels; the Service and the PDB select the same pods.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = objects[("Service", f"genres-{role}")]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert service["spec"]["ports"][0]["port"] == 8080
    pdb = objects[("PodDisruptionBudget", f"genres-{role}")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_classifier_outlives_its_drain_and_is_left_to_keda() -> None:
    objects = _by_kind_and_name()
    classifier = objects[("Deployment", "genres-classifier")]
    assert classifier["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 90
    assert "replicas" not in classifier["spec"], "KEDA owns the classifier's replica count"
    scaled = objects[("ScaledObject", "genres-classifier")]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "genres-classifier"
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {"genres-classifier"}
    topics = {t["metadata"]["topic"] for t in triggers}
    assert "track.uploaded" in topics
    assert topics <= {"track.uploaded", "track.classification_requested"}
    # Replicas past the partition count would sit idle (see deploy/README.md).
    partitions = int(objects[("ConfigMap", "genres-config")]["data"]["KAFKA_TOPIC_PARTITIONS"])
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= partitions


def test_configmap_and_secret_hold_the_interface_variables() -> None:
    objects = _by_kind_and_name()
    config = objects[("ConfigMap", "genres-config")]["data"]
    secret = objects[("Secret", "genres-secrets")]["stringData"]
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "CLASSIFIER_BACKEND",
        "REPLICATE_ENABLED",
        "REPLICATE_TOP_N",
        "REPLICATE_TIMEOUT_SECONDS",
        "REPLICATE_MAX_PREDICTIONS_PER_MINUTE",
        "CLASSIFIER_CONCURRENCY",
        "LOG_FORMAT",
    ):
        assert name in config, name
    assert set(secret) == {"REPLICATE_API_TOKEN", "DATABASE_URL"}
    assert not set(config) & set(secret), "a secret in the ConfigMap"
    assert all(isinstance(value, str) for value in config.values())


# Decided and served by every role, but possibly not (yet) a field of Settings.
NOT_SETTINGS = {"HEALTH_PORT"}


def test_configmap_and_secret_are_settings_the_service_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Settings ignores unknown variables, so a misspelt name would silently do nothing.
    from genres.config import Settings, load_settings

    objects = _by_kind_and_name()
    env = {
        **objects[("ConfigMap", "genres-config")]["data"],
        **objects[("Secret", "genres-secrets")]["stringData"],
    }
    fields = {name.upper() for name in Settings.model_fields}
    assert set(env) - NOT_SETTINGS <= fields, set(env) - NOT_SETTINGS - fields
    for name in fields:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.backend.value == env["CLASSIFIER_BACKEND"]
    servers = env["KAFKA_BOOTSTRAP_SERVERS"].split(",")
    assert settings.kafka_bootstrap_servers == [server.strip() for server in servers]
