"""deploy/kubernetes/ checked offline by real schema validators, and for the facts the design rests on.

Every manifest validates against the Kubernetes API's own schemas (kubernetes-validate, which ships
them per release; strict: an unknown field is an error, as with `kubectl apply --validate=strict`)
for each of KUBERNETES_VERSIONS. The ScaledObject validates against the openAPIV3Schema of the
ScaledObject CRD of the pinned KEDA release (scripts/fetch-keda-crd takes it from the Go module
proxy once and caches it), made strict the same way, and its trigger's metadata against KEDA's
schema of the prometheus scaler's parameters from the same release. Then the facts: readiness on
/readyz, scale to zero, a grace period and a liveness window longer than the longest batch, a query
that names the gauge the gateway really exports, and settings that the real settings object accepts.

No cluster and no network are needed once the CRD is cached.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

from api.metrics import BACKLOG_WITHOUT_CAPACITY, MODEL_WORKERS_DESIRED
from api.start_checks import check_gateway_security
from cli.processes import REPO_ROOT
from shared.api_keys import new_key
from shared.config import Settings
from shared.models.catalogue import Catalogue

pytestmark = [pytest.mark.integration]

MANIFESTS = REPO_ROOT / "deploy" / "kubernetes"
FETCH_KEDA = REPO_ROOT / "scripts" / "fetch-keda-crd"
# KEDA 2.21.0 is built against Kubernetes 1.36's API (k8s.io/api v0.36); these are that release
# and the two before it.
KUBERNETES_VERSIONS = ("1.34.0", "1.35.0", "1.36.0")
KEDA_VERSION = "v2.21.0"
KEDA_API_VERSION = "keda.sh/v1alpha1"
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# What a container's secretKeyRef stands for when the settings are read here (the API keys' in their form).
SECRET_VALUE = "not-a-real-password"
SECRET_VALUES = {"ASYNCINFER_API_KEY_ENTRIES": new_key("tenant-a")[1].line()}


def load_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, resource) for every document of every manifest, in file order."""
    documents = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path.name, document))
    return documents


DOCUMENTS = load_documents()


def the(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for _, doc in DOCUMENTS if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    for _, doc in DOCUMENTS:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            yield doc["metadata"]["name"], doc["spec"]["template"]


def settings_of(monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any]) -> Settings:
    """The settings a container gets: its ConfigMaps, then its own env (secrets as placeholders)."""
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        env.update(the("ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in spec.get("env", []):
        env[variable["name"]] = variable.get("value", SECRET_VALUES.get(variable["name"], SECRET_VALUE))
    for name in [name for name in os.environ if name.startswith("ASYNCINFER_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.fixture(scope="module")
def keda_dir() -> Path:
    done = subprocess.run([str(FETCH_KEDA)], stdout=subprocess.PIPE, text=True, check=False, timeout=600)
    if done.returncode != 0:
        pytest.fail("scripts/fetch-keda-crd failed (see its output above)")
    path = Path(done.stdout.strip())
    assert path.name == KEDA_VERSION
    return path


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema with unknown fields refused, as the API server's strict field validation does:
    every object that lists its properties and neither allows more nor preserves unknown fields."""
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(schema)
    return schema


def scaled_object() -> dict[str, Any]:
    (found,) = [doc for _, doc in DOCUMENTS if doc["kind"] == "ScaledObject"]
    return found


def scaled_object_schema(keda_dir: Path) -> dict[str, Any]:
    crd = yaml.safe_load((keda_dir / "keda.sh_scaledobjects.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == "ScaledObject"
    api_version = scaled_object()["apiVersion"]
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    return served["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


# --- schemas ---------------------------------------------------------------------------------


def test_the_directory_holds_the_whole_deployment() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in DOCUMENTS}
    assert kinds == {
        ("ConfigMap", "asyncinfer"),
        ("Service", "asyncinfer-couchbase"),
        ("Service", "asyncinfer-redis"), ("StatefulSet", "asyncinfer-redis"),
        ("Deployment", "asyncinfer-gateway"), ("Service", "asyncinfer-gateway"),
        ("Deployment", "asyncinfer-worker"), ("ScaledObject", "asyncinfer-worker"),
    }
    # No namespace in the files: `kubectl -n <namespace> apply -f deploy/kubernetes/` picks it.
    assert not any("namespace" in doc["metadata"] for _, doc in DOCUMENTS)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(version: str) -> None:
    checked = 0
    for filename, doc in DOCUMENTS:
        if doc["apiVersion"] == KEDA_API_VERSION:
            continue  # a custom resource: KEDA's CRD below
        try:
            validated = kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(part) for part in e.path)
            pytest.fail(f"{filename}: {doc['kind']}/{doc['metadata']['name']} at {path}: {e.message}")
        assert validated == version.rsplit(".", 1)[0]  # that release's schemas, not an older one's
        checked += 1
    assert checked == len(DOCUMENTS) - 1


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_schema_validation_has_teeth(version: str) -> None:
    deployment = copy.deepcopy(the("Deployment", "asyncinfer-worker"))
    container(deployment, "worker")["livenessProbe"]["periodSecond"] = 30  # a typo
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(deployment, version, strict=True)
    config = copy.deepcopy(the("ConfigMap", "asyncinfer"))
    config["data"]["ASYNCINFER_SCALE_MIN_WORKERS"] = 0  # unquoted: not a string
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(config, version, strict=True)


def test_the_scaled_object_validates_against_kedas_crd(keda_dir: Path) -> None:
    so = scaled_object()
    jsonschema.Draft202012Validator(strict(scaled_object_schema(keda_dir))).validate(so)
    # The CRD's schema leaves metadata to the API server: check it as Kubernetes' ObjectMeta.
    definitions = referencing.Resource.from_contents(kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{KUBERNETES_VERSIONS[-1]}-local-strict/_definitions.json", KUBERNETES_VERSIONS[-1]))
    meta = jsonschema.Draft202012Validator({"$ref": OBJECT_META}, registry=definitions @ referencing.Registry())
    meta.validate(so["metadata"])
    # The CRD's one CEL rule, which jsonschema cannot run: minReplicaCount <= maxReplicaCount.
    assert so["spec"]["minReplicaCount"] <= so["spec"].get("maxReplicaCount", 100)


def test_the_crd_validation_has_teeth(keda_dir: Path) -> None:
    validator = jsonschema.Draft202012Validator(strict(scaled_object_schema(keda_dir)))
    typo = copy.deepcopy(scaled_object())
    typo["spec"]["minReplicas"] = 0
    number = copy.deepcopy(scaled_object())
    number["spec"]["triggers"][0]["metadata"]["threshold"] = 1  # trigger metadata is strings only
    for wrong in (typo, number):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(wrong)


def test_the_trigger_uses_only_parameters_the_prometheus_scaler_has(keda_dir: Path) -> None:
    schema = json.loads((keda_dir / "scalers-schema.json").read_text())
    (trigger,) = scaled_object()["spec"]["triggers"]
    (scaler,) = [s for s in schema["scalers"] if s["type"] == trigger["type"] == "prometheus"]
    parameters = {p["name"]: p for p in scaler["parameters"] if p.get("metadataVariableReadable")}
    metadata = trigger["metadata"]
    assert set(metadata) <= set(parameters), set(metadata) - set(parameters)
    required = {name for name, p in parameters.items() if not p.get("optional") and "default" not in p}
    assert required == {"serverAddress", "query", "threshold"} and required <= set(metadata)
    for name, value in metadata.items():
        assert value in parameters[name].get("allowedValue", [value]), name
    assert urlparse(metadata["serverAddress"]).scheme in {"http", "https"}


# --- the facts -------------------------------------------------------------------------------


def test_the_trigger_reads_the_gauge_the_gateway_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    (trigger,) = scaled_object()["spec"]["triggers"]
    exported = MODEL_WORKERS_DESIRED.describe()[0].name
    assert exported == "asyncinfer_model_workers_desired"
    # The pool of the model version the Deployment serves, on its own signal; max(): every gateway
    # exports the same value, so sum() would multiply it by the gateways.
    model = settings_of(monkeypatch, container(the("Deployment", "asyncinfer-worker"), "worker")).model
    assert trigger["metadata"]["query"] == f'max({exported}{{model="{model}"}})'
    assert set(re.findall(r"asyncinfer_\w+", trigger["metadata"]["query"])) == {exported}
    assert Catalogue.discover(default_model="mobilenet_v2").resolve(model).ref == model
    # One worker per unit of the signal: the count is the signal itself.
    assert trigger["metadata"]["threshold"] == "1"
    assert trigger.get("metricType", "AverageValue") == "AverageValue"
    # Any outstanding job makes the signal at least 1, so "0" activates from zero; the gauge for
    # that state exists for alerting (its comment says so).
    assert trigger["metadata"]["activationThreshold"] == "0"
    assert BACKLOG_WITHOUT_CAPACITY.describe()[0].name in (MANIFESTS / "worker-autoscaling.yaml").read_text()
    # An empty answer (no gateway scraped) is a failure that triggers the fallback, not a 0.
    assert trigger["metadata"]["ignoreNullValues"] == "false"
    assert scaled_object()["spec"]["fallback"]["replicas"] >= 1


def test_the_workers_scale_from_zero_within_the_signals_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = scaled_object()["spec"]
    worker = the("Deployment", "asyncinfer-worker")
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "asyncinfer-worker"}
    assert spec["minReplicaCount"] == 0
    # KEDA owns the count: a replicas field would reset it on every `kubectl apply`.
    assert "replicas" not in worker["spec"]
    gateway = settings_of(monkeypatch, container(the("Deployment", "asyncinfer-gateway"), "gateway"))
    # The signal must be able to reach 0, and never ask for more than KEDA allows.
    assert gateway.scale_min_workers == spec["minReplicaCount"] == 0
    assert gateway.scale_max_workers == spec["maxReplicaCount"]


def test_the_gateway_is_ready_on_readyz_and_alive_on_healthz() -> None:
    gateway = the("Deployment", "asyncinfer-gateway")
    spec = container(gateway, "gateway")
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert spec["livenessProbe"]["httpGet"]["path"] == spec["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["command"] == ["asyncinfer", "api", "--host", "0.0.0.0"]
    assert ports["http"] == Settings().port
    assert spec["lifecycle"]["preStop"]["sleep"]["seconds"] < gateway["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]
    service = the("Service", "asyncinfer-gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert gateway["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]


def test_a_stopped_worker_has_time_to_drain_its_longest_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = the("Deployment", "asyncinfer-worker")
    pod = worker["spec"]["template"]["spec"]
    spec = container(worker, "worker")
    settings = settings_of(monkeypatch, spec)
    assert settings.inference_timeout_s == Settings().inference_timeout_s == 120
    pause = spec["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The running batch may take the whole inference time limit, then writes its results.
    assert pod["terminationGracePeriodSeconds"] >= pause + settings.inference_timeout_s + 30


def test_the_worker_is_probed_by_its_own_healthcheck_without_killing_a_busy_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = container(the("Deployment", "asyncinfer-worker"), "worker")
    settings = settings_of(monkeypatch, spec)
    assert spec["command"] == ["asyncinfer", "worker"]
    for probe in ("startupProbe", "livenessProbe"):
        assert spec[probe]["exec"]["command"] == ["python", "-m", "workers.healthcheck"]
        assert spec[probe]["timeoutSeconds"] > 5  # the healthcheck waits 5 s for the ping's reply
    assert importlib.util.find_spec("workers.healthcheck") is not None
    assert "readinessProbe" not in spec  # no Service sends it anything
    # A batch blocks the ping's reply: the liveness window outlasts a batch that runs to the time
    # limit after riding out a store outage.
    liveness = spec["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > (
        settings.inference_timeout_s + settings.store_retry_s)
    assert settings.worker_metrics_port == spec["ports"][0]["containerPort"]
    assert settings.worker_metrics_host == "0.0.0.0"
    assert settings.weights == "imagenet"


def test_redis_keeps_the_queue_on_a_persistent_volume() -> None:
    redis = the("StatefulSet", "asyncinfer-redis")
    spec = container(redis, "redis")
    args = " ".join(spec["args"])
    assert "--appendonly yes" in args and "--maxmemory-policy noeviction" in args
    assert "--appendfsync everysec" in args
    data_dir = spec["args"][spec["args"].index("--dir") + 1]
    (mount,) = [m for m in spec["volumeMounts"] if m["mountPath"] == data_dir]
    claims = {claim["metadata"]["name"] for claim in redis["spec"]["volumeClaimTemplates"]}
    assert mount["name"] in claims
    assert redis["spec"]["replicas"] == 1
    service = the("Service", "asyncinfer-redis")
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    assert redis["spec"]["serviceName"] == service["metadata"]["name"]


def test_the_apps_reach_redis_by_its_service_and_couchbase_as_an_external_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    couchbase = the("Service", "asyncinfer-couchbase")
    assert couchbase["spec"]["type"] == "ExternalName" and couchbase["spec"]["externalName"]
    for deployment, name in (("asyncinfer-gateway", "gateway"), ("asyncinfer-worker", "worker")):
        spec = container(the("Deployment", deployment), name)
        settings = settings_of(monkeypatch, spec)
        assert settings.environment == "production" and settings.mesh == "none"
        assert urlparse(settings.redis_url).hostname == "asyncinfer-redis"
        assert urlparse(settings.redis_url).port == the("Service", "asyncinfer-redis")["spec"]["ports"][0]["port"]
        assert settings.store_kind == "couchbase" and urlparse(settings.store).hostname == "asyncinfer-couchbase"
        # The credentials come from one Secret that is never part of these files.
        secrets = {v["valueFrom"]["secretKeyRef"]["name"] for v in spec["env"] if "valueFrom" in v}
        # The gateway's API keys too: a production gateway refuses to start without them.
        assert secrets == {"asyncinfer-couchbase", "asyncinfer-api-keys"} if name == "gateway" else {"asyncinfer-couchbase"}
        if name == "gateway":
            check_gateway_security(settings)
        assert settings.couchbase_password.get_secret_value() == SECRET_VALUE


def test_service_links_never_reach_the_settings() -> None:
    # Kubernetes would inject ASYNCINFER_REDIS_PORT=tcp://… and the like for Services named
    # asyncinfer-*, inside the prefix the settings read.
    for name, template in pod_templates():
        assert template["spec"]["enableServiceLinks"] is False, name


def test_gateway_and_worker_run_the_one_image_as_its_user() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+) asyncinfer", dockerfile).group(1))  # type: ignore[union-attr]
    images = set()
    for deployment, name in (("asyncinfer-gateway", "gateway"), ("asyncinfer-worker", "worker")):
        pod = the("Deployment", deployment)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["runAsNonRoot"] is True
        images.add(container(the("Deployment", deployment), name)["image"])
    assert len(images) == 1
