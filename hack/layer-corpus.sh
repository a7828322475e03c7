#!/usr/bin/env bash
# Build a corpus of images whose layers were written by tools other than
# Berth, offline, and push them to the local registry for
# e2e/tests/layer_corpus.rs.
#
#   hack/layer-corpus.sh [--force] [--no-push]
#
# The images (pushed as 127.0.0.1:5000/berth-test/corpus-<name>:latest):
#   umoci-repack         umoci new + unpack + repack of busybox-static, then a
#                        second repack that deletes files (umoci's whiteouts)
#   umoci-insert         umoci insert of a busybox tree at / (names with a
#                        leading "/", the layer ends right after the last
#                        file's data), a 137-byte file, a --whiteout and an
#                        --opaque directory
#   buildah              buildah (vfs storage, no daemon) from scratch + copy
#   skopeo-zstd          umoci-insert recompressed by skopeo: zstd
#   skopeo-gzip9         ... gzip level 9
#   skopeo-v2s2          ... converted to a docker v2s2 manifest (dir: transport)
#   skopeo-from-v2s2     ... and back to OCI
#   skopeo-docker-archive  through the `docker save` format and back
#   skopeo-uncompressed  ... and back with --dest-oci-accept-uncompressed-layers: skopeo 1.9
#                        labels the plain tar layers tar+gzip (Berth goes by the data)
#   py-*                 Python tarfile layers (hack/layer-corpus.py): GNU,
#                        PAX and USTAR, without end-of-archive blocks, cut
#                        right after the data, sparse (GNU tar), whiteouts and
#                        opaque dirs over a lower layer, ./ and / prefixes
#
# Everything is built under ${BERTH_TEST_DIR:-/var/tmp/berth-test}/corpus.
# Re-runs are quick: the build is skipped when the hash of the inputs (these
# scripts, busybox and the tools' versions) is unchanged, and a push is
# skipped when the registry already serves the same manifest digest.
# Timestamps are fixed wherever the tools allow it.
#
#   --force     rebuild and re-push even if nothing changed
#   --no-push   build only (no registry needed)
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REGISTRY=127.0.0.1:5000
REPO=berth-test
DIR=$BERTH_TEST_DIR/corpus
LAYOUT=$DIR/oci
V2S2=$DIR/v2s2
STAMP=$DIR/inputs.sha256
LIST=$DIR/images.txt
BUSYBOX=/bin/busybox
CREATED=1970-01-01T00:00:00Z
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_V2S2=application/vnd.docker.distribution.manifest.v2+json
SKOPEO=$DIR/skopeo
# In the OCI layout, in push order.
TAGS=(umoci-repack umoci-insert buildah py-gnu py-pax py-ustar py-no-trailer
    py-cut-after-data py-sparse py-whiteout py-dotslash)
# skopeo's copies, each in a layout of its own ($SKOPEO/<name>, tag latest): in
# a layout that already holds the source's blobs (or that its blob cache knows),
# skopeo reuses them instead of recompressing or converting. skopeo-v2s2 is a
# dir: transport copy, the only offline one that keeps a v2s2 manifest.
SKOPEO_TAGS=(skopeo-zstd skopeo-gzip9 skopeo-from-v2s2 skopeo-docker-archive skopeo-uncompressed)

export SOURCE_DATE_EPOCH=0 LC_ALL=C
umask 022

FORCE=0
PUSH=1
for arg in "$@"; do
    case $arg in
    --force) FORCE=1 ;;
    --no-push) PUSH=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

need_cmd umoci skopeo buildah jq python3 tar gzip zstd sha256sum curl flock
[[ -x $BUSYBOX ]] || die "$BUSYBOX missing (run: sudo hack/install-deps.sh)"

# fix_times DIR : every mtime to the epoch, so umoci's layers do not change
# with the build time.
fix_times() { find "$1" -exec touch -h -d @0 {} +; }

# A small busybox tree: the binary, a few applet links, a config file.
busybox_tree() {
    local root=$1 a
    mkdir -p "$root/bin" "$root/etc" "$root/usr/share/corpus"
    cp "$BUSYBOX" "$root/bin/busybox"
    for a in sh ls cat sleep; do ln -sf busybox "$root/bin/$a"; done
    ln -f "$root/bin/busybox" "$root/bin/hardlinked-busybox"
    printf 'corpus\n' >"$root/etc/hostname"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'data\n' >"$root/usr/share/corpus/data"
    chmod 0750 "$root/usr/share/corpus"
    chown 1000:1000 "$root/usr/share/corpus/data"
    fix_times "$root"
}

build_umoci() {
    local w=$DIR/work/umoci b
    # A history entry with a fixed date (without one umoci warns; with the
    # default one every build would differ).
    local HIST=(--history.created "$CREATED" --history.created_by layer-corpus.sh)
    rm -rf "$w" && mkdir -p "$w"
    b=$w/bundle
    umoci new --image "$LAYOUT:empty"
    umoci unpack --image "$LAYOUT:empty" "$b" >/dev/null
    busybox_tree "$b/rootfs"
    umoci repack --image "$LAYOUT:umoci-v1" "${HIST[@]}" "$b"
    # Second layer, from a fresh unpack of the first (a bundle diffs against the
    # image it was unpacked from): deletions (umoci writes whiteouts) and a
    # changed file.
    rm -rf "$b"
    umoci unpack --image "$LAYOUT:umoci-v1" "$b" >/dev/null
    rm -rf "$b/rootfs/usr/share/corpus" "$b/rootfs/bin/cat"
    printf 'changed\n' >"$b/rootfs/etc/hostname"
    fix_times "$b/rootfs"
    umoci repack --image "$LAYOUT:umoci-repack" "${HIST[@]}" "$b"
    umoci config --image "$LAYOUT:umoci-repack" --created "$CREATED" --no-history \
        --config.cmd /bin/sh

    # umoci insert on top of the empty image: names with a leading "/".
    busybox_tree "$w/tree"
    printf '%137s' tail >"$w/f137" && fix_times "$w/f137"
    mkdir -p "$w/opq/keep" && printf 'new\n' >"$w/opq/keep/new" && fix_times "$w/opq"
    umoci insert --image "$LAYOUT:empty" --tag umoci-insert "${HIST[@]}" "$w/tree" /
    umoci insert --image "$LAYOUT:umoci-insert" "${HIST[@]}" "$w/f137" /etc/f137
    umoci insert --image "$LAYOUT:umoci-insert" "${HIST[@]}" --whiteout /bin/cat
    umoci insert --image "$LAYOUT:umoci-insert" "${HIST[@]}" --opaque "$w/opq" /usr/share
    umoci config --image "$LAYOUT:umoci-insert" --created "$CREATED" --no-history \
        --config.cmd /bin/sh
    umoci rm --image "$LAYOUT:empty"
    umoci rm --image "$LAYOUT:umoci-v1"
}

build_buildah() {
    local w=$DIR/work/buildah c
    rm -rf "$w" && mkdir -p "$w"
    local bh=(buildah --root "$w/storage" --runroot "$w/run" --storage-driver vfs)
    busybox_tree "$w/tree"
    c=$("${bh[@]}" from --quiet scratch)
    "${bh[@]}" copy --quiet "$c" "$w/tree/" / >/dev/null
    "${bh[@]}" config --cmd /bin/sh "$c"
    "${bh[@]}" commit --quiet --rm --timestamp 0 --omit-history "$c" corpus-buildah >/dev/null
    "${bh[@]}" push --quiet corpus-buildah "oci:$LAYOUT:buildah"
    "${bh[@]}" rmi --all >/dev/null
    # vfs storage is plain files: nothing mounted, safe to delete.
    rm -rf "$w"
}

build_skopeo() {
    local src="oci:$LAYOUT:umoci-insert" w=$DIR/work/skopeo
    rm -rf "$w" "$V2S2" "$SKOPEO" && mkdir -p "$w" "$SKOPEO"
    # --dest-compress: recompress although the source is compressed already.
    skopeo copy -q --dest-compress --dest-compress-format zstd "$src" "oci:$SKOPEO/skopeo-zstd:latest"
    skopeo copy -q --dest-compress --dest-compress-format gzip --dest-compress-level 9 \
        "$src" "oci:$SKOPEO/skopeo-gzip9:latest"
    skopeo copy -q --format v2s2 "$src" "dir:$V2S2"
    skopeo copy -q --format oci "dir:$V2S2" "oci:$SKOPEO/skopeo-from-v2s2:latest"
    skopeo copy -q "$src" "docker-archive:$w/saved.tar:corpus/saved:latest"
    skopeo copy -q "docker-archive:$w/saved.tar" "oci:$SKOPEO/skopeo-docker-archive:latest"
    # skopeo 1.9 labels the uncompressed layers it keeps tar+gzip: a mislabelled layer, which
    # containerd and docker (and Berth) accept because they go by the data.
    skopeo copy -q --dest-oci-accept-uncompressed-layers \
        "docker-archive:$w/saved.tar" "oci:$SKOPEO/skopeo-uncompressed:latest"
    rm -rf "$w"
}

build_all() {
    rm -rf "$LAYOUT" "$V2S2" "$SKOPEO" "$DIR/work"
    # The Python images first: the script writes a fresh layout.
    python3 "$BERTH_HACK_DIR/layer-corpus.py" "$LAYOUT" >/dev/null
    build_umoci
    build_buildah
    build_skopeo
    rm -rf "$DIR/work"
}

inputs_hash() {
    {
        sha256sum "$0" "$BERTH_HACK_DIR/layer-corpus.py" "$BERTH_HACK_DIR/lib.sh" "$BUSYBOX" |
            cut -d' ' -f1
        python3 --version
        dpkg-query -W -f='${Package} ${Version}\n' umoci skopeo buildah tar busybox-static
    } | sha256sum | cut -d' ' -f1
}

# tag_digest TAG [LAYOUT] : the manifest digest of TAG in LAYOUT (the main one,
# or a skopeo copy's own, where the tag is "latest").
tag_digest() {
    local layout=${2:-$LAYOUT} tag=$1
    [[ -n ${2:-} ]] && tag=latest
    jq -r --arg t "$tag" \
        '.manifests[] | select(.annotations."org.opencontainers.image.ref.name" == $t) | .digest' \
        "$layout/index.json" 2>/dev/null
}

layout_complete() {
    local t
    [[ -f $LAYOUT/index.json && -f $V2S2/manifest.json ]] || return 1
    for t in "${TAGS[@]}"; do
        [[ -n $(tag_digest "$t") ]] || return 1
    done
    for t in "${SKOPEO_TAGS[@]}"; do
        [[ -n $(tag_digest "$t" "$SKOPEO/$t") ]] || return 1
    done
}

remote_digest() {
    curl -fsS -I --max-time 10 -H "Accept: $2" \
        "http://$REGISTRY/v2/$REPO/corpus-$1/manifests/latest" 2>/dev/null |
        tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }'
}

# push NAME SOURCE DIGEST MEDIATYPE
push() {
    local name=$1 src=$2 dig=$3 mt=$4 got
    echo "$REGISTRY/$REPO/corpus-$name:latest $dig" >>"$LIST.tmp"
    if ((!FORCE)) && [[ $(remote_digest "$name" "$mt") == "$dig" ]]; then
        return
    fi
    log "pushing $REGISTRY/$REPO/corpus-$name:latest"
    skopeo copy -q --preserve-digests --dest-tls-verify=false "$src" \
        "docker://$REGISTRY/$REPO/corpus-$name:latest"
    got=$(remote_digest "$name" "$mt")
    [[ $got == "$dig" ]] || die "corpus-$name: registry serves '$got', built $dig"
}

push_all() {
    local t
    : >"$LIST.tmp"
    for t in "${TAGS[@]}"; do
        push "$t" "oci:$LAYOUT:$t" "$(tag_digest "$t")" "$MT_MANIFEST"
    done
    for t in "${SKOPEO_TAGS[@]}"; do
        push "$t" "oci:$SKOPEO/$t:latest" "$(tag_digest "$t" "$SKOPEO/$t")" "$MT_MANIFEST"
    done
    push skopeo-v2s2 "dir:$V2S2" "sha256:$(sha256sum <"$V2S2/manifest.json" | cut -d' ' -f1)" "$MT_V2S2"
    mv "$LIST.tmp" "$LIST"
    log "corpus of $(wc -l <"$LIST") images on $REGISTRY (list in $LIST)"
}

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9

hash=$(inputs_hash)
if ((!FORCE)) && [[ -f $STAMP && $(<"$STAMP") == "$hash" ]] && layout_complete; then
    log "corpus $LAYOUT is up to date"
else
    log "building the layer corpus into $LAYOUT"
    rm -f "$STAMP"
    start=$SECONDS
    build_all
    echo "$hash" >"$STAMP"
    log "build took $((SECONDS - start))s"
fi

if ((PUSH)); then
    "$BERTH_HACK_DIR/registry.sh" start 9>&-
    push_all
fi
