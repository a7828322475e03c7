#!/usr/bin/env bash
# Install the Debian 12 packages Berth and its test rig need. Idempotent: only
# missing packages are installed, and apt-get update runs only when it has to,
# so a second run takes a second or two.
#
#   sudo hack/install-deps.sh            install what's missing
#   hack/install-deps.sh --check         exit 1 and list what's missing
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(
    # OCI runtimes Berth drives, and CNI plugins for pod networking.
    runc crun containernetworking-plugins
    # Local registry + image tooling for hack/registry.sh and hack/test-images.sh.
    docker-registry skopeo umoci busybox-static jq zstd gzip tar openssl
    # htpasswd for the auth registry instance.
    apache2-utils
    # containerd: side-by-side benchmarks (and its ctr for poking at images).
    containerd
    # protoc for the generated protocols (proto/cri, proto/monitor, proto/*/v1).
    protobuf-compiler
    # Networking and process tooling used by the runtime and by tests
    # (ip, ss, iptables, nsenter/unshare/mount, ps/pgrep).
    iproute2 iptables util-linux mount procps
    # Static test binaries (hack/images/*.c) are built with gcc -static.
    gcc libc6-dev
    # curl for health checks and registry API calls; ca-certificates keeps
    # curl/skopeo happy even though we only talk to 127.0.0.1.
    curl ca-certificates
    # Linter for these scripts.
    shellcheck
    # The e2e tests parse berthd's /metrics with the Prometheus client's own text parser
    # (/usr/bin/python3), not with code of ours.
    python3-prometheus-client
    # e2e/tests/cli_parity.rs reads `berth -o yaml` back with PyYAML (someone else's YAML parser).
    python3-yaml
    # make drives the README commands.
    make
    # systemd-analyze for `make check-systemd` (packaging/berthd.service); installing the package
    # starts nothing on a machine that does not boot with systemd.
    systemd
    # Peers nobody here wrote, for the interoperability e2e tests (README "Clients tested"):
    # Debian's Go with grpc-go (dialing as kubelet 1.26-1.29 do) and spdystream (the SPDY library
    # kubectl and kubelet use), built in GOPATH mode at test time; buildah for the layer corpus;
    # python3-venv for grpcio from PyPI (hack/peers.sh).
    # golang-protobuf 1.3 is named because it conflicts with 1.5, which could otherwise satisfy
    # grpc-dev's dependency: hack/peers.sh builds protoc-gen-go from its source.
    golang-1.19-go golang-google-grpc-dev golang-github-golang-protobuf-1-3-dev
    golang-github-docker-spdystream-dev buildah python3-venv
)

missing_packages() {
    local p status
    for p in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
        # "ii " = installed and configured; anything else needs (re)install.
        if [[ $status != "ii"* ]]; then
            echo "$p"
        fi
    done
}

# apt-get update only if the package lists are missing or older than a day:
# cheap on re-runs, and still avoids installing from a stale index (404s).
apt_lists_fresh() {
    local lists=/var/lib/apt/lists
    compgen -G "$lists/*_Packages*" >/dev/null || return 1
    [[ -z $(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin +1440 -print -quit) ]]
}

mapfile -t missing < <(missing_packages)

if [[ ${1:-} == --check ]]; then
    if ((${#missing[@]})); then
        echo "missing: ${missing[*]}"
        exit 1
    fi
    echo "all ${#PACKAGES[@]} packages installed"
    exit 0
fi

if ((${#missing[@]} == 0)); then
    log "all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

[[ $EUID -eq 0 ]] || die "need root to install: ${missing[*]} (re-run with sudo)"

export DEBIAN_FRONTEND=noninteractive
if ! apt_lists_fresh; then
    log "apt-get update (package lists missing or older than a day)"
    apt-get update -q
fi
log "installing: ${missing[*]}"
# Keep existing config files instead of prompting; no recommends, to stay
# small. Where systemd runs, Debian also starts its own docker-registry
# service on :5000; hack/registry.sh detects that and says how to stop it.
apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}"

mapfile -t still < <(missing_packages)
if ((${#still[@]})); then
    die "still missing after install: ${still[*]}"
fi
log "done"
