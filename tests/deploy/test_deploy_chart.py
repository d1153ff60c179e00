"""helm/ccat-workflow-manager renders to valid Kubernetes objects for the default values and
the staging example, its values pass values.schema.json, and the names shared between our
templates and the `dagster:` values agree.

How it renders: with Helm's own engine (tests/deploy/chart.py). Objects are validated against
the Kubernetes OpenAPI schemas of ``kubernetes-validate`` in strict mode (no API server runs
here, so this stands where ``kubectl apply --dry-run=server`` would), values against
values.schema.json with ``jsonschema`` and with Helm's validator. The dagster dependency is not
rendered (it is fetched from its chart repository, not kept here), so its values are checked
for the structure our deployment relies on, not by its own schema.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import dagster
import jsonschema
import kubernetes
import kubernetes_validate
import pytest
import yaml

from ccat_assets.settings import Settings
from tests.deploy import chart

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((chart.CHART / "values.schema.json").read_text())
CASES = {"default": (), "staging": (chart.STAGING,)}
Case = tuple[dict[str, Any], chart.Rendered]
#: The Kubernetes API the objects must be valid for: the one the ``kubernetes`` client that
#: the kubernetes backend uses was generated from (client 36.x speaks Kubernetes 1.36).
KUBERNETES_VERSION = "1.{}".format(kubernetes.__version__.split(".")[0])
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    vals = chart.values(*CASES[request.param])
    return vals, chart.render(vals)


def settings_data(rendered: chart.Rendered, vals: dict[str, Any]) -> dict[str, str]:
    return rendered.one("ConfigMap", vals["settings"]["configMapName"])["data"]


def schema_errors(vals: dict[str, Any]) -> list[tuple[str, str]]:
    """(dotted path, message) of every values.schema.json violation, by ``jsonschema``."""
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [(".".join(str(p) for p in error.absolute_path), error.message)
            for error in validator.iter_errors(vals)]


def kubernetes_problems(obj: dict[str, Any]) -> list[str]:
    """Everything the API server would reject in ``obj``; empty when it is valid.

    The OpenAPI schemas (strict: no unknown fields) check fields, types and required
    fields; they say nothing about names, so the DNS-1123 rule for object names and the
    rule for label values are checked here.
    """
    found = []
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        found.append(f"{'.'.join(str(p) for p in exc.path) or '(root)'}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        found.append(exc.message)
    name = obj["metadata"].get("name", "")
    if not DNS_SUBDOMAIN.match(name):
        found.append(f"metadata.name {name!r} is not a DNS-1123 name")
    for key, value in (obj["metadata"].get("labels") or {}).items():
        if not isinstance(value, str) or not LABEL_VALUE.match(value):
            found.append(f"label {key}={value!r} is not a valid label value")
    return found


def test_values_pass_the_schema(case: Case) -> None:
    vals, _ = case
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert schema_errors(vals) == []
    assert chart.schema_problems(vals) == ""


@pytest.mark.parametrize(("override", "path", "message", "helm_says"), [
    ({"hpcBackend": "pbs"}, "hpcBackend", "is not one of", "'/hpcBackend'"),
    ({"opsDb": {"create": True}}, "opsDb.url", "does not match", "'/opsDb/url'"),
    ({"image": {"tag": "latest"}}, "image.tag", "should not be valid", "'/image/tag'"),
    ({"slurm": {"ssh": {"create": True}}}, "slurm.ssh.knownHosts", "non-empty",
     "'/slurm/ssh/knownHosts'"),
    ({"workspace": {"mountPath": "data"}}, "workspace.mountPath", "does not match",
     "'/workspace/mountPath'"),
    ({"settings": {"extraEnv": {"PATH": "/tmp"}}}, "settings.extraEnv", "'PATH' does not match",
     "invalid propertyName 'PATH'"),
    ({"serviceAccount": {"name": "Runner_1"}}, "serviceAccount.name", "does not match",
     "'/serviceAccount/name'"),
    ({"replicas": 2}, "", "('replicas' was unexpected)", "additional properties 'replicas'"),
])
def test_schema_rejects_bad_values(override: dict[str, Any], path: str, message: str,
                                   helm_says: str) -> None:
    vals = chart.values(overrides=override)
    found = schema_errors(vals)
    assert any(p == path and message in m for p, m in found), found
    assert helm_says in chart.schema_problems(vals)
    with pytest.raises(chart.ChartError, match=re.escape(helm_says)):
        chart.render(vals)


def test_objects_are_valid_kubernetes_objects(case: Case) -> None:
    _, rendered = case
    assert rendered.objects
    for obj in rendered.objects:
        assert kubernetes_problems(obj) == [], obj["metadata"]["name"]
    keys = [(o["kind"], o["metadata"]["name"]) for o in rendered.objects]
    assert len(keys) == len(set(keys))


def test_settings_are_read_by_the_application(
    case: Case, monkeypatch: pytest.MonkeyPatch,
) -> None:
    vals, rendered = case
    data = settings_data(rendered, vals)
    for key, value in data.items():
        assert key.startswith("CCAT_WORKFLOW_MANAGER_"), key
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.hpc_backend == vals["hpcBackend"]
    assert str(settings.pipelines_dir) == vals["workspace"]["mountPath"]
    # Settings ignores unknown variables (extra="ignore"): each key must be a field, or it
    # would silently do nothing.
    names = {key.removeprefix("CCAT_WORKFLOW_MANAGER_").lower() for key in data}
    assert names <= set(Settings.model_fields), sorted(names - set(Settings.model_fields))
    for name in names & {"k8s_workspace_pvc", "slurm_port", "slurm_key_path"}:
        assert str(getattr(settings, name)) == data[f"CCAT_WORKFLOW_MANAGER_{name.upper()}"]


def test_names_shared_with_the_dagster_values_agree(
    case: Case,
) -> None:
    vals, rendered = case
    users = vals["dagster"]["dagster-user-deployments"]
    (deployment,) = users["deployments"]
    assert deployment["name"] == vals["settings"]["codeLocationName"]
    assert deployment["image"] == vals["image"]
    assert deployment["codeServerArgs"] == ["-m", "ccat_assets.definitions"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert [e["name"] for e in deployment["envConfigMaps"]] == [vals["settings"]["configMapName"]]
    assert [e["name"] for e in deployment["envSecrets"]] == [vals["opsDb"]["secretName"]]
    assert users["serviceAccount"] == {"create": False, "name": vals["serviceAccount"]["name"]}
    rendered.one("ServiceAccount", vals["serviceAccount"]["name"])

    volumes = {v["name"]: v for v in deployment["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    workspace = vals["workspace"]
    assert volumes["workspace"]["persistentVolumeClaim"]["claimName"] == workspace["claimName"]
    assert mounts["workspace"] == workspace["mountPath"]
    if workspace["create"]:
        rendered.one("PersistentVolumeClaim", workspace["claimName"])
    if vals["hpcBackend"] == "slurm":
        secret = volumes["ssh"]["secret"]
        assert secret["secretName"] == vals["slurm"]["ssh"]["secretName"]
        assert secret["defaultMode"] == 0o440
        assert mounts["ssh"] == vals["slurm"]["ssh"]["mountPath"]
        data = settings_data(rendered, vals)
        assert data["CCAT_WORKFLOW_MANAGER_SLURM_KEY_PATH"].startswith(mounts["ssh"] + "/")


def test_dagster_instance_values(case: Case) -> None:
    vals, _ = case
    d = vals["dagster"]
    embedded = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    production = yaml.safe_load((ROOT / "deploy" / "dagster.postgres.yaml").read_text())
    assert d["postgresql"]["enabled"] is False
    assert d["generatePostgresqlPasswordSecret"] is False
    assert d["global"]["postgresqlSecretName"]
    assert d["postgresql"]["postgresqlScheme"] == (
        production["storage"]["custom"]["config"]["postgres_db"]["scheme"])
    assert d["runLauncher"]["type"] == "K8sRunLauncher"
    daemon = d["dagsterDaemon"]
    assert daemon["runCoordinator"]["enabled"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    # The dagster chart fails when both places set a run limit.
    assert queued.get("maxConcurrentRuns") is None
    assert d["concurrency"]["enabled"] and d["concurrency"]["runs"]["maxConcurrentRuns"] >= 1
    assert d["concurrency"]["pools"]["granularity"] == embedded["concurrency"]["pools"][
        "granularity"]
    assert daemon["runMonitoring"]["enabled"]
    assert daemon["runMonitoring"]["freeSlotsAfterRunEndSeconds"] > 0
    retries = daemon["runRetries"]
    assert retries["enabled"] and retries["maxRetries"] == embedded["run_retries"]["max_retries"]
    assert retries["retryOnAssetOrOpFailure"] is False


def test_chart_depends_on_the_installed_dagster() -> None:
    meta = yaml.safe_load((chart.CHART / "Chart.yaml").read_text())
    assert meta["dependencies"] == [{"name": "dagster", "version": dagster.__version__,
                                     "repository": "https://dagster-io.github.io/helm"}]


def test_migration_hook_runs_ccat_wm_db_upgrade(case: Case) -> None:
    vals, rendered = case
    job = rendered.one("Job")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert {"pre-install", "pre-upgrade"} <= set(hooks)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["ccat-wm", "db", "upgrade"]
    assert container["envFrom"] == [{"secretRef": {"name": vals["opsDb"]["secretName"]}}]
    assert container["image"] == f"{vals['image']['repository']}:{vals['image']['tag']}"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_chart_made_opsdb_secret_exists_before_the_migration() -> None:
    url = "postgresql://ccat:secret@opsdb.example.org/ccat_ops"
    rendered = chart.render(chart.values(overrides={"opsDb": {"create": True, "url": url}}))
    secret, job = rendered.one("Secret", "ccat-wm-opsdb"), rendered.one("Job")
    assert secret["stringData"] == {"CCAT_OPS_DB_URL": url}
    weight = lambda o: int(o["metadata"]["annotations"]["helm.sh/hook-weight"])  # noqa: E731
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert weight(secret) < weight(job)


def test_ssh_secret_rendered_only_when_asked() -> None:
    ssh = {"create": True, "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\n...",
           "knownHosts": "slurm-login.example.org ssh-ed25519 AAAA..."}
    secret = chart.render(chart.values(overrides={"slurm": {"ssh": ssh}})).one("Secret")
    assert secret["stringData"] == {"id_key": ssh["privateKey"], "known_hosts": ssh["knownHosts"]}
    assert not chart.render(chart.values()).of_kind("Secret")


def test_a_value_the_schema_allows_but_a_template_requires_stops_rendering() -> None:
    vals = chart.values(overrides={"slurm": {"host": ""}})
    assert schema_errors(vals) == []
    with pytest.raises(chart.ChartError, match=re.escape("slurm.host is required")):
        chart.render(vals)


@pytest.mark.parametrize(("override", "message"), [
    ({"opsDb": {"create": True, "url": ""}}, "opsDb.url is required"),
    ({"slurm": {"ssh": {"create": True, "privateKey": "k"}}}, "slurm.ssh.knownHosts"),
])
def test_missing_required_values_stop_rendering(
    override: dict[str, Any], message: str, tmp_path: Path,
) -> None:
    """The schema stops these first; behind it (``--skip-schema-validation``) the
    templates' own ``required`` still refuses to render a Secret without its value."""
    assert schema_errors(chart.values(overrides=override))
    with pytest.raises(chart.ChartError):
        chart.render(chart.values(overrides=override))
    unchecked = chart.without_schema(tmp_path)
    with pytest.raises(chart.ChartError, match=re.escape(message)):
        chart.render(chart.values(overrides=override, chart=unchecked), chart=unchecked)


def backend_permissions() -> set[tuple[str, str]]:
    """(resource, verb) pairs the kubernetes backend's API calls need."""
    verbs = {"create": "create", "read": "get", "list": "list", "patch": "patch",
             "delete": "delete", "replace": "update"}
    source = (ROOT / "resources" / "backends" / "kubernetes.py").read_text()
    needed = set()
    for verb, kind, log in re.findall(r"\.(\w+?)_namespaced_(job|pod)(_log)?\(", source):
        needed.add((f"{kind}s/log" if log else f"{kind}s", verbs[verb]))
    return needed


def test_rbac_only_with_the_kubernetes_backend_and_covers_its_calls() -> None:
    assert not chart.render(chart.values()).of_kind("Role")
    vals = chart.values(chart.STAGING)
    rendered = chart.render(vals, namespace="ccat-staging")
    role, binding = rendered.one("Role"), rendered.one("RoleBinding")
    granted = {(res, verb) for rule in role["rules"] for res in rule["resources"]
               for verb in rule["verbs"]}
    needed = backend_permissions()
    assert needed and needed <= granted, needed - granted
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    runner = vals["serviceAccount"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": runner,
                                    "namespace": "ccat-staging"}]
    jobs_namespace = settings_data(rendered, vals)["CCAT_WORKFLOW_MANAGER_K8S_NAMESPACE"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == jobs_namespace


def test_values_yaml_documents_every_key() -> None:
    """Each key has a comment above it or on its line (entries of YAML lists excepted)."""
    lines = (chart.CHART / "values.yaml").read_text().splitlines()
    undocumented, list_indent, previous = [], None, ""
    for line in lines:
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if not stripped:
            continue
        if list_indent is not None and indent <= list_indent and not stripped.startswith("- "):
            list_indent = None
        if stripped.startswith("- "):
            list_indent = indent if list_indent is None else min(list_indent, indent)
        key = re.match(r"^([\w.-]+):", stripped)
        if key and list_indent is None and "#" not in line and not previous.startswith("#"):
            undocumented.append(key.group(1))
        previous = stripped
    assert undocumented == []
