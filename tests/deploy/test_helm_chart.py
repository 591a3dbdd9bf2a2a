"""The Helm chart lints, renders and validates offline: every manifest against the Kubernetes
JSON schemas (kubernetes-validate), the Prometheus Operator objects with promtool, the values
against values.schema.json, and every setting the chart writes against the settings model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from stimmung.config import Settings, load_settings

from .conftest import ROOT

CHART = ROOT / "helm" / "stimmung"
KUBE_VERSION = "1.31.0"
VALUES = {"default": [], "production": ["-f", str(CHART / "ci" / "production-values.yaml")]}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}


class _UniqueKeys(yaml.SafeLoader):
    """Duplicate keys are silently merged by PyYAML but rejected by kubectl's strict decoding."""


def _no_duplicates(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {dupes}", node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def render(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, "template", "rel", str(CHART), "--kube-version", KUBE_VERSION, *args],
                          capture_output=True, text=True, timeout=120)


def manifests(helm: str, which: str) -> list[dict]:
    done = render(helm, *VALUES[which])
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.load_all(done.stdout, Loader=_UniqueKeys) if d]


@pytest.fixture(scope="module", params=list(VALUES))
def rendered(request, helm) -> tuple[str, list[dict]]:
    return request.param, manifests(helm, request.param)


@pytest.mark.parametrize("which", list(VALUES))
def test_chart_lints(helm, which):
    done = subprocess.run([helm, "lint", str(CHART), "--strict", *VALUES[which]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_manifest_validates_against_the_kubernetes_schemas(rendered):
    which, docs = rendered
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["kind"] in CRD_KINDS:
            continue  # no schema ships for CRDs: checked below
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{which}: {doc['kind']}/{doc['metadata']['name']}: {err.message} at {list(err.path)}")
    expected = {"ConfigMap", "Deployment", "Service", "ServiceAccount", "Job", "PodDisruptionBudget"}
    if which == "production":
        expected |= {"HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "PersistentVolumeClaim", *CRD_KINDS}
    assert expected <= kinds, expected - kinds


def test_prometheus_operator_and_keda_objects(helm, promtool, tmp_path):
    docs = {d["kind"]: d for d in manifests(helm, "production")}
    rule = docs["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    check = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "stimmung-rules.yaml").read_text())
    assert rule["spec"]["groups"] == shipped["groups"], "the chart ships exactly deploy/prometheus's rules"
    monitor = docs["ServiceMonitor"]
    metrics_service = next(d for d in manifests(helm, "production")
                           if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics"))
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics_service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == metrics_service["spec"]["ports"][0]["name"] == "metrics"
    scaled = docs["ScaledObject"]
    trigger = scaled["spec"]["triggers"][0]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "rel-stimmung-sink"
    assert trigger["type"] == "kafka" and trigger["metadata"]["consumerGroup"] == "stimmung-prod-sink"
    assert trigger["metadata"]["topic"] == "stimmung.mentions.enriched"
    assert "rel-stimmung-sink" not in {d["metadata"]["name"] for d in manifests(helm, "production")
                                       if d["kind"] == "HorizontalPodAutoscaler"}, "KEDA and an HPA never both scale one role"


def _containers(docs: list[dict]):
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            for c in pod["containers"]:
                yield doc, pod, c


def test_pods_are_non_root_read_only_with_probes_and_resources(rendered):
    which, docs = rendered
    for doc, pod, c in _containers(docs):
        name = f"{which}: {doc['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert c["resources"]["requests"] and c["resources"]["limits"], name
        assert pod["automountServiceAccountToken"] is False, name
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), f"{name}: needs a writable /tmp"
        if doc["kind"] == "Deployment":
            # the inbox answers its probes on its own HTTP port (its app checks the cases index)
            port = "http" if c["args"] == ["inbox"] else "metrics"
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
                assert c[probe]["httpGet"]["path"] == path and c[probe]["httpGet"]["port"] == port, name
            assert port in {p["name"] for p in c["ports"]}, name
            assert c["args"][0] in {"worker", "sink", "privacy-worker", "webhook", "connect", "alerting", "cases", "consent",
                                    "inbox"}, name


def test_connectors_are_single_replica_with_their_checkpoint_volume(helm):
    docs = manifests(helm, "production")
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    connectors = [d for d in docs if d["kind"] == "Deployment" and "connector-" in d["metadata"]["name"]]
    assert {d["spec"]["template"]["spec"]["containers"][0]["args"][1] for d in connectors} == {"rss", "mastodon", "reddit"}
    for d in connectors:
        assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate"
        vol = next(v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "checkpoints")
        assert vol["persistentVolumeClaim"]["claimName"] in claims


def _settings_of(docs: list[dict], tmp_path: Path) -> tuple[Settings, dict]:
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-settings"))
    raw = yaml.safe_load(cm["data"]["settings.yaml"])
    path = tmp_path / "settings.yaml"
    path.write_text(cm["data"]["settings.yaml"])
    return load_settings(path), raw


def _field_exists(env_name: str) -> bool:
    """STIMMUNG_A__B__C -> Settings.a.b.c exists."""
    model = Settings
    for part in env_name.removeprefix("STIMMUNG_").lower().split("__"):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return False
        model = fields[part].annotation
    return True


def test_every_setting_the_chart_writes_is_a_real_settings_field(rendered, tmp_path):
    which, docs = rendered
    settings, raw = _settings_of(docs, tmp_path)  # extra="forbid": an unknown key fails here
    assert settings.metrics.port == 9108 and settings.log_format == "json"
    assert settings.privacy.pseudonym_key_file is not None
    for _, _, c in _containers(docs):
        for env in c.get("env", []):
            if env["name"].startswith("STIMMUNG_") and env["name"] != "STIMMUNG_CONFIG":
                assert _field_exists(env["name"]), env["name"]
    dockerfile_env = [line.split("=")[0].strip() for line in (ROOT / "Dockerfile").read_text().split()
                      if line.startswith("STIMMUNG_") and "=" in line]
    assert dockerfile_env and all(_field_exists(name) or name == "STIMMUNG_MODEL_CACHE" for name in dockerfile_env), dockerfile_env
    if which == "production":
        assert settings.kafka.security.protocol == "SASL_SSL" and settings.kafka.topics.partitions == 12
        assert settings.elasticsearch.ca_certs is not None and settings.brands[0].name == "Nordbahn"


def test_every_secret_file_the_settings_name_is_mounted(rendered, tmp_path):
    which, docs = rendered
    _, raw = _settings_of(docs, tmp_path)

    def files(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if (key.endswith("_file") or key in ("ca_certs", "ssl_cafile", "ssl_certfile", "ssl_keyfile")) \
                        and isinstance(value, str) and value.startswith("/etc/stimmung/secrets/"):
                    yield value
                else:
                    yield from files(value)
        elif isinstance(node, list):
            for item in node:
                yield from files(item)

    wanted = set(files(raw))
    assert wanted, "at least the pseudonymisation key"
    for doc, pod, _ in _containers(docs):
        volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
        mounted = {f"/etc/stimmung/secrets/{item['path']}" for src in volume["projected"]["sources"] for item in src["secret"]["items"]}
        assert wanted <= mounted, (doc["metadata"]["name"], wanted - mounted)


def test_the_inbox_role_is_deployed_behind_its_ingress_with_its_secrets_and_network_policy(helm, tmp_path):
    docs = manifests(helm, "production")
    named = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deployment = named[("Deployment", "rel-stimmung-inbox")]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    settings, _ = _settings_of(docs, tmp_path)
    assert container["args"] == ["inbox"] and deployment["spec"]["replicas"] == 2
    assert {"name": "http", "containerPort": settings.inbox.port} in container["ports"]
    assert settings.inbox.host == "0.0.0.0" and settings.inbox.cookie_secure is True
    assert settings.inbox.public_url == "https://inbox.listening.example.com"
    # secrets only as mounted files, each projected from the Secret the values name
    mounted = {item["path"]: src["secret"]["name"] for v in pod["volumes"] if v["name"] == "secrets"
               for src in v["projected"]["sources"] for item in src["secret"]["items"]}
    for path in (settings.inbox.session_secret_file, settings.inbox.accounts_file, settings.inbox.oidc.client_secret_file):
        assert str(path).startswith("/etc/stimmung/secrets/") and mounted[Path(path).name] == "stimmung-inbox"
    service = named[("Service", "rel-stimmung-inbox")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    ingress = named[("Ingress", "rel-stimmung-inbox")]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "rel-stimmung-inbox", "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off", "live updates (SSE)"
    # its own policy: HTTP only from the ingress controller; the shared policy leaves the inbox out
    policy = named[("NetworkPolicy", "rel-stimmung-inbox")]
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    http_rule = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "http")
    assert http_rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    shared = named[("NetworkPolicy", "rel-stimmung")]
    assert {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["inbox"]} in \
        shared["spec"]["podSelector"]["matchExpressions"]
    assert ("PodDisruptionBudget", "rel-stimmung-inbox") in named
    assert not any("inbox" in d["metadata"]["name"] for d in manifests(helm, "default")), "off by default"


@pytest.mark.parametrize("bad, message", [
    (["--set", "inbox.enabled=true", "--set", "settings.crm.routes[0].name=c", "--set", "settings.crm.routes[0].queue=support"],
     "/inbox/sessionSecret/name"),
    (["--set", "inbox.enabled=true", "--set", "inbox.sessionSecret.name=stimmung-inbox"], "the inbox has no teams"),
    (["--set", "inbox.port=0"], "/inbox/port"),
    (["--set", "worker.replicas=-1"], "minimum"),
    (["--set", "wroker.replicas=2"], "additional properties 'wroker' not allowed"),
    (["--set", "kafka.security.protocol=SASL_SSL"], "saslUsername"),
    (["--set", "kafka.security.protocol=KERBEROS"], "/kafka/security/protocol"),
    (["--set", "privacy.pseudonymKeySecret.name="], "pseudonymKeySecret"),
    (["--set", "kafka.bootstrapServers=kafka"], "bootstrapServers"),
    (["--set", "worker.resources=null"], "resources"),
])
def test_bad_values_fail_at_install_with_the_field_named(helm, bad, message):
    done = render(helm, *bad)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_values_schema_is_valid_json_schema():
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for which in ("values.yaml", "ci/production-values.yaml"):
        values = yaml.safe_load((CHART / which).read_text())
        if which != "values.yaml":  # a values file is merged over the defaults
            values = _merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)
        jsonschema.validate(values, schema)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
