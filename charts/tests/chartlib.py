"""Helpers for the chart tests: running the real helm, parsing its output, and the schemas the
rendered objects are checked against. hack/chart-test.sh provides helm and the Python packages."""

import copy
import functools
import os
import re
import subprocess
import tempfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "berth"
RELEASE = "berth"
NAMESPACE = "berth-system"
# The chart's kubeVersion floor (kubelet 1.26, the oldest Berth serves), the first version with
# securityContext.appArmorProfile, and the newest schemas kubernetes-validate has.
KUBE_VERSIONS = ("1.26.0", "1.30.0", "1.37.0")

HELM = os.environ.get("HELM", "helm")


class HelmError(Exception):
    def __init__(self, args, proc):
        super().__init__(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        self.stderr = proc.stderr


def helm(*args):
    proc = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise HelmError(args, proc)
    return proc.stdout


def helm_with_values(args, values=None, sets=(), set_strings=()):
    """helm ARGS with a values dict (in a temporary file) and --set / --set-string pairs."""
    with tempfile.TemporaryDirectory(prefix="berth-chart-values.") as tmp:
        extra = []
        if values is not None:
            path = Path(tmp) / "values.yaml"
            path.write_text(yaml.safe_dump(values))
            extra += ["--values", str(path)]
        for s in sets:
            extra += ["--set", s]
        for s in set_strings:
            extra += ["--set-string", s]
        return helm(*args, *extra)


def render(values=None, sets=(), set_strings=(), namespace=NAMESPACE, kube_version=None):
    """The chart's objects (hooks included), as `helm template` renders them (for the cluster
    version `kube_version`, else helm's default)."""
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    if kube_version:
        args += ["--kube-version", kube_version]
    out = helm_with_values(args, values, sets, set_strings)
    return [d for d in yaml.safe_load_all(out) if d]


def lint(values=None, sets=()):
    return helm_with_values(["lint", "--strict", str(CHART)], values, sets)


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects, expected one"
    return found[0]


def configmap(docs, suffix):
    return next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith(suffix))


def sync_container(docs):
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def validate_kubernetes(doc, versions=KUBE_VERSIONS):
    """Every version of `versions`, strict: unknown fields are errors."""
    for version in versions:
        kubernetes_validate.validate(doc, version, strict=True)


# --- prometheus-operator CRDs --------------------------------------------------------------------
# cloudcoil-models-prometheus-operator's models are generated from prometheus-operator's CRDs (its
# version is prometheus-operator's, plus a build number); their JSON schema carries the CRDs' types,
# required fields and patterns. The CRD schema itself lets unknown fields through (the API server
# prunes them, dropping the setting without a word), so, like `kubectl --validate=strict`, the test
# rejects them.


def _strict(schema):
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


@functools.lru_cache(maxsize=None)
def crd_validator(kind):
    from cloudcoil.models.prometheus_operator import v1

    schema = _strict(copy.deepcopy(getattr(v1, kind).model_json_schema(by_alias=True)))
    return jsonschema.Draft202012Validator(schema)


def validate_crd(doc):
    assert doc["apiVersion"] == "monitoring.coreos.com/v1", doc["apiVersion"]
    errors = sorted(crd_validator(doc["kind"]).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        raise jsonschema.ValidationError(
            "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors))


def validate(doc, versions=KUBE_VERSIONS):
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        validate_crd(doc)
    else:
        validate_kubernetes(doc, versions)


# --- berthd's metrics ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def exported_metrics():
    """The series names berthd exports: the README's metrics table (the contract), each checked to
    be registered in the Rust sources too; histograms with their _bucket, _sum and _count."""
    table = (REPO / "README.md").read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    families = {}
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.split("|")
        for name in re.findall(r"`([a-z_:][a-z0-9_:]*)`", cells[1]):
            families[name] = cells[2]
    sources = "\n".join(p.read_text() for d in ("pkg", "cmd") for p in (REPO / d).rglob("*.rs"))
    names = set()
    for family, kind in families.items():
        if family.startswith("berth_") and f'"{family}"' not in sources:
            raise AssertionError(f"README lists {family}, which no Rust source registers")
        names.add(family)
        if "histogram" in kind:
            names.update(family + s for s in ("_bucket", "_sum", "_count"))
    return names
