#!/usr/bin/env bash
# Push N distinct images (default 200) to the local test registry for the
# image-queries workload: 127.0.0.1:5000/berth-bench/many:img-0 ... img-<N-1>.
#
#   hack/bench/many-images.sh [N]
#
# Every image shares berth-test/pause:3.9's layer (mounted across
# repositories, not uploaded again) and gets its own config (a label with its
# index), so each is a separate image with its own ID. Uses only the
# distribution API (curl), so 200 images take a few seconds. Idempotent: an
# image whose tag already resolves is skipped. Needs hack/test-images.sh run
# first (for the pause image) and the registry up.
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

COUNT=${1:-200}
REGISTRY=http://127.0.0.1:5000
BASE_REPO=berth-test/pause
BASE_TAG=3.9
REPO=berth-bench/many
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_CONFIG=application/vnd.oci.image.config.v1+json

need_cmd curl jq sha256sum
[[ $COUNT =~ ^[0-9]+$ ]] || die "N must be a number, got '$COUNT'"

base_manifest=$(curl -fsS -H "Accept: $MT_MANIFEST" "$REGISTRY/v2/$BASE_REPO/manifests/$BASE_TAG") ||
    die "cannot read $BASE_REPO:$BASE_TAG from $REGISTRY (run hack/test-images.sh)"
base_config_digest=$(jq -r .config.digest <<<"$base_manifest")
base_config=$(curl -fsS "$REGISTRY/v2/$BASE_REPO/blobs/$base_config_digest")

# The shared layer(s): mount into the target repository once.
while read -r layer; do
    curl -fsS -o /dev/null -X POST \
        "$REGISTRY/v2/$REPO/blobs/uploads/?mount=$layer&from=$BASE_REPO" ||
        die "mounting $layer into $REPO"
done < <(jq -r '.layers[].digest' <<<"$base_manifest")

# upload_blob FILE DIGEST : monolithic upload (POST a session, PUT the bytes).
upload_blob() {
    local file=$1 digest=$2 location
    location=$(curl -fsS -o /dev/null -D - -X POST "$REGISTRY/v2/$REPO/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
    [[ -n $location ]] || die "no upload location for $REPO"
    [[ $location == http* ]] || location=$REGISTRY$location
    local sep='?'
    [[ $location == *\?* ]] && sep='&'
    curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$file" "$location${sep}digest=$digest"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pushed=0
for ((i = 0; i < COUNT; i++)); do
    if curl -fsS -o /dev/null -I -H "Accept: $MT_MANIFEST" "$REGISTRY/v2/$REPO/manifests/img-$i" 2>/dev/null; then
        continue
    fi
    jq -c --arg i "$i" '.config.Labels = ((.config.Labels // {}) + {"berth.bench/index": $i})' \
        <<<"$base_config" >"$work/config"
    config_digest=sha256:$(sha256sum "$work/config" | cut -d' ' -f1)
    config_size=$(stat -c %s "$work/config")
    upload_blob "$work/config" "$config_digest"
    jq -c --arg d "$config_digest" --argjson s "$config_size" --arg mt "$MT_CONFIG" \
        '.config = {mediaType: $mt, digest: $d, size: $s}' <<<"$base_manifest" >"$work/manifest"
    curl -fsS -o /dev/null -X PUT -H "Content-Type: $MT_MANIFEST" \
        --data-binary "@$work/manifest" "$REGISTRY/v2/$REPO/manifests/img-$i" ||
        die "pushing $REPO:img-$i"
    pushed=$((pushed + 1))
done
log "$REPO: $COUNT images present ($pushed pushed now)"
