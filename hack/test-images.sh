#!/usr/bin/env bash
# Build Berth's test images offline and push them to the local registry.
#
#   hack/test-images.sh [--force] [--no-push] [--with-auth]
#
# Images are built from the busybox-static package's /bin/busybox and the C
# programs in hack/images/ into one OCI layout
# (${BERTH_TEST_DIR:-/var/tmp/berth-test}/images/oci, one tag per image so
# that images share the busybox base layer blob), then pushed verbatim to
# 127.0.0.1:5000/berth-test/* (see hack/images/README.md).
#
# Reproducible: the same inputs give byte-identical blobs and therefore the
# same digests on every run and on every machine with the same Debian
# package versions (they are part of the input hash). All timestamps are fixed
# (file mtimes, config "created", history), tars are sorted with numeric
# owners and no atime/ctime, compressors are run with fixed settings, and
# skopeo pushes with --preserve-digests. Re-runs are quick: the build is
# skipped when the hash of all inputs is unchanged, and a push is skipped
# when the registry already serves the same manifest digest.
#
#   --force     rebuild and re-push even if nothing changed
#   --no-push   build the layout only (no registry needed)
#   --with-auth also push every image to the htpasswd-protected instance
#               on 127.0.0.1:5001 (user berth, password berth-secret)
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REGISTRY=127.0.0.1:5000
AUTH_REGISTRY=127.0.0.1:5001
AUTH_CREDS=berth:berth-secret
REPO=berth-test
IMG_DIR=$BERTH_TEST_DIR/images
LAYOUT=$IMG_DIR/oci
STAMP=$IMG_DIR/inputs.sha256
DIGESTS=$IMG_DIR/digests.txt
BUSYBOX=/bin/busybox

# Every timestamp in every image. Epoch 0 is the conventional
# SOURCE_DATE_EPOCH for "no meaningful date".
export SOURCE_DATE_EPOCH=0
CREATED=1970-01-01T00:00:00Z
# Sorting and file modes must not depend on the caller's locale/umask.
export LC_ALL=C
umask 022

# layout tag -> pushed reference (repository:tag under $REGISTRY/$REPO).
declare -A PUSH_REF=(
    [busybox]=busybox:latest
    [config]=config:latest
    [httpd]=httpd:latest
    [pause]=pause:3.9
    [whiteout]=whiteout:latest
    [zstd]=zstd:latest
    [big]=big:latest
    [big10]=big10:latest
)
PUSH_ORDER=(busybox config httpd pause whiteout zstd big big10)

MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_INDEX=application/vnd.oci.image.index.v1+json
MT_LAYER_ZSTD=application/vnd.oci.image.layer.v1.tar+zstd
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

FORCE=0
PUSH=1
WITH_AUTH=0
for arg in "$@"; do
    case $arg in
    --force) FORCE=1 ;;
    --no-push) PUSH=0 ;;
    --with-auth) WITH_AUTH=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

need_cmd umoci skopeo jq gcc tar gzip zstd openssl sha256sum curl flock
[[ -x $BUSYBOX ]] || die "$BUSYBOX missing (run: sudo hack/install-deps.sh)"

# ---------------------------------------------------------------------------
# Deterministic layer tars and layout editing
# ---------------------------------------------------------------------------

# make_tar SRC_DIR OUT_TAR : tar SRC_DIR's contents (names relative, no "./"
# prefix) with fixed mtimes, sorted names, numeric owners taken from the
# staging files, and no atime/ctime. The PaxHeaders name must not contain
# the default %p (the pid of tar), or every run would differ.
make_tar() {
    local src=$1 out=$2
    (cd "$src" && find . -mindepth 1 -maxdepth 1 -printf '%P\0' | sort -z) |
        tar -C "$src" --null -T - -cf "$out" \
            --sort=name --mtime=@0 --numeric-owner --format=pax \
            --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime
}

# add_layer TAG NEW_TAG TAR CREATED_BY : append TAR as a gzip layer
# (umoci compresses it; its output is deterministic). A history entry with a
# fixed date keeps tools that pair history with layers happy.
add_layer() {
    umoci raw add-layer --image "$L:$1" --tag "$2" \
        --history.created "$CREATED" --history.created_by "$4" "$3"
}

# set_config TAG NEW_TAG UMOCI_CONFIG_ARGS... : umoci config with a fixed
# "created" and no history entry (which would carry the current time).
set_config() {
    local tag=$1 new=$2
    shift 2
    umoci config --image "$L:$tag" --tag "$new" --created "$CREATED" --no-history "$@"
}

blob_path() { echo "$L/blobs/sha256/${1#sha256:}"; }

# write_blob FILE : move FILE into the layout's blob store; prints its digest.
write_blob() {
    local d
    d=sha256:$(sha256sum "$1" | cut -d' ' -f1)
    mv "$1" "$(blob_path "$d")"
    echo "$d"
}

# tag_descriptor TAG : the index.json descriptor of TAG (compact JSON).
tag_descriptor() {
    jq -ce --arg t "$1" \
        '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t)' \
        "$L/index.json" || die "tag '$1' not in $L/index.json"
}

# set_tag TAG MEDIATYPE DIGEST SIZE : point TAG at a descriptor in index.json.
set_tag() {
    jq -c --arg t "$1" --arg mt "$2" --arg d "$3" --argjson s "$4" '
        .manifests |= (map(select(.annotations["org.opencontainers.image.ref.name"] != $t))
            + [{mediaType: $mt, digest: $d, size: $s,
                annotations: {"org.opencontainers.image.ref.name": $t}}])
    ' "$L/index.json" >"$L/index.json.tmp"
    mv "$L/index.json.tmp" "$L/index.json"
}

# add_raw_layer TAG NEW_TAG BLOB MEDIATYPE DIFF_ID CREATED_BY : append an
# already-compressed layer blob (e.g. zstd, which umoci 0.4 can't write) by
# editing config and manifest with jq, recomputing their digests.
add_raw_layer() {
    local tag=$1 new=$2 blob=$3 mt=$4 diff_id=$5 by=$6
    local desc mdig cdig ldig lsize tmp
    desc=$(tag_descriptor "$tag")
    mdig=$(jq -r .digest <<<"$desc")
    cdig=$(jq -r .config.digest "$(blob_path "$mdig")")
    lsize=$(stat -c %s "$blob")
    ldig=$(write_blob "$blob")

    tmp=$WORK/config.json
    jq -cj --arg id "$diff_id" --arg c "$CREATED" --arg by "$by" '
        .rootfs.diff_ids += [$id] | .history = ((.history // []) + [{created: $c, created_by: $by}])
    ' "$(blob_path "$cdig")" >"$tmp"
    local csize
    csize=$(stat -c %s "$tmp")
    cdig=$(write_blob "$tmp")

    tmp=$WORK/manifest.json
    jq -cj --arg cd "$cdig" --argjson cs "$csize" --arg mt "$mt" --arg ld "$ldig" --argjson ls "$lsize" '
        .config.digest = $cd | .config.size = $cs
        | .layers += [{mediaType: $mt, digest: $ld, size: $ls}]
    ' "$(blob_path "$mdig")" >"$tmp"
    local msize
    msize=$(stat -c %s "$tmp")
    mdig=$(write_blob "$tmp")
    set_tag "$new" "$MT_MANIFEST" "$mdig" "$msize"
}

# ---------------------------------------------------------------------------
# Root filesystems
# ---------------------------------------------------------------------------

# busybox_rootfs DIR : busybox + every applet as a /bin symlink, users and
# groups the tests rely on, and the usual top-level directories.
busybox_rootfs() {
    local r=$1 applet
    mkdir -p "$r"/{bin,dev,etc,home/berth,proc,root,sys,tmp,var}
    cp "$BUSYBOX" "$r/bin/busybox"
    chmod 0755 "$r/bin/busybox"
    for applet in $("$BUSYBOX" --list); do
        # --list includes "busybox" itself; don't clobber the binary.
        [[ $applet == busybox ]] && continue
        ln -s busybox "$r/bin/$applet"
    done
    cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
berth:x:1000:1000:berth test user:/home/berth:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    # "extra" is a supplementary group of berth (tests check `id` output).
    cat >"$r/etc/group" <<'EOF'
root:x:0:
berth:x:1000:
extra:x:2000:berth
nobody:x:65534:
EOF
    chmod 0644 "$r/etc/passwd" "$r/etc/group"
    chmod 0700 "$r/root"
    chmod 1777 "$r/tmp"
    chown 1000:1000 "$r/home/berth"
}

# random_file FILE BYTES SEED : deterministic incompressible data (AES-CTR
# keystream over zeros), so gzip can't shrink the "big" layers. openssl
# reads a finite input, so there's no SIGPIPE to trip pipefail.
random_file() {
    local key
    key=$(printf 'berth-big-%s' "$3" | sha256sum | cut -c1-32)
    head -c "$2" /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 >"$1"
}

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------

build_binaries() {
    # Fixed flags; -s strips symbols, no -g, and the prefix map removes the
    # build directory from anything that might record it.
    mkdir -p "$WORK/src"
    cp "$BERTH_HACK_DIR/images/httpd.c" "$BERTH_HACK_DIR/images/pause.c" "$WORK/src/"
    local p
    for p in httpd pause; do
        (cd "$WORK/src" && gcc -static -O2 -s -Wall -Wextra \
            -ffile-prefix-map="$WORK/src"=. -o "$p" "$p.c")
    done
}

build_all() {
    # Build into a fresh layout next to the real one and swap at the end, so
    # a failed build never leaves a half-written layout behind.
    L=$IMG_DIR/oci.new
    WORK=$IMG_DIR/work
    rm -rf "$L" "$WORK"
    mkdir -p "$WORK"
    build_binaries

    umoci init --layout "$L"
    # Empty amd64/linux image every image starts from.
    umoci new --image "$L:scratch"
    set_config scratch scratch --architecture amd64 --os linux

    log "busybox (amd64 + arm64 index)"
    busybox_rootfs "$WORK/busybox"
    make_tar "$WORK/busybox" "$WORK/busybox.tar"
    add_layer scratch busybox-amd64 "$WORK/busybox.tar" "busybox rootfs (busybox-static $(dpkg-query -W -f='${Version}' busybox-static))"
    set_config busybox-amd64 busybox-amd64 --config.env "$PATH_ENV" --config.cmd sh
    # Same content, config says arm64: a runtime that blindly takes the
    # index's first entry gets this one.
    set_config busybox-amd64 busybox-arm64 --architecture arm64

    log "config"
    set_config busybox-amd64 config \
        --clear config.cmd \
        --config.entrypoint /bin/sh --config.entrypoint -c \
        --config.cmd 'echo entry-ok; id; pwd; env' \
        --config.workingdir /work/dir \
        --config.env FOO=from-image --config.env BAR=bar-image \
        --config.user berth \
        --config.stopsignal SIGUSR1 \
        --config.volume /data \
        --config.exposedports 8080/tcp \
        --config.label org.berth.test.image=config

    log "httpd"
    mkdir -p "$WORK/httpd"
    install -m 0755 "$WORK/src/httpd" "$WORK/httpd/httpd"
    make_tar "$WORK/httpd" "$WORK/httpd.tar"
    add_layer busybox-amd64 httpd "$WORK/httpd.tar" "COPY httpd /httpd (hack/images/httpd.c)"
    set_config httpd httpd --clear config.cmd --config.entrypoint /httpd \
        --config.exposedports 8080/tcp

    log "pause"
    mkdir -p "$WORK/pause"
    install -m 0755 "$WORK/src/pause" "$WORK/pause/pause"
    make_tar "$WORK/pause" "$WORK/pause.tar"
    add_layer scratch pause "$WORK/pause.tar" "COPY pause /pause (hack/images/pause.c)"
    set_config pause pause --config.entrypoint /pause

    log "whiteout"
    # Layer 1: busybox + files that the next layers delete or mask.
    cp -a "$WORK/busybox" "$WORK/wh1"
    mkdir -p "$WORK/wh1/data" "$WORK/wh1/dir"
    echo keep >"$WORK/wh1/data/keep.txt"
    echo gone >"$WORK/wh1/data/gone.txt"
    echo old-a >"$WORK/wh1/dir/old-a"
    echo old-b >"$WORK/wh1/dir/old-b"
    make_tar "$WORK/wh1" "$WORK/wh1.tar"
    # Layer 2, by hand: umoci would write per-file whiteouts for a replaced
    # directory, but we want the opaque marker. Whiteout files are empty
    # regular files with the special names.
    mkdir -p "$WORK/wh2/data" "$WORK/wh2/dir"
    : >"$WORK/wh2/data/.wh.gone.txt"
    : >"$WORK/wh2/dir/.wh..wh..opq"
    echo new >"$WORK/wh2/dir/new"
    make_tar "$WORK/wh2" "$WORK/wh2.tar"
    # Layer 3: a plain addition on top.
    mkdir -p "$WORK/wh3/data"
    echo added >"$WORK/wh3/data/added.txt"
    make_tar "$WORK/wh3" "$WORK/wh3.tar"
    add_layer scratch whiteout "$WORK/wh1.tar" "busybox rootfs + /data/{keep,gone}.txt + /dir/old-{a,b}"
    add_layer whiteout whiteout "$WORK/wh2.tar" "rm /data/gone.txt; replace /dir (opaque) with /dir/new"
    add_layer whiteout whiteout "$WORK/wh3.tar" "add /data/added.txt"
    set_config whiteout whiteout --config.env "$PATH_ENV" --config.cmd sh

    log "zstd"
    cp -a "$WORK/busybox" "$WORK/zstd"
    echo zstd >"$WORK/zstd/zstd-marker"
    make_tar "$WORK/zstd" "$WORK/zstd.tar"
    # Fixed level and thread count => identical output for a given zstd version.
    zstd -q -f -3 -T1 "$WORK/zstd.tar" -o "$WORK/zstd.tar.zst"
    add_raw_layer scratch zstd "$WORK/zstd.tar.zst" "$MT_LAYER_ZSTD" \
        "sha256:$(sha256sum "$WORK/zstd.tar" | cut -d' ' -f1)" "busybox rootfs + /zstd-marker (zstd)"
    set_config zstd zstd --config.env "$PATH_ENV" --config.cmd sh

    log "big (3 x 65 MiB incompressible layers)"
    umoci tag --image "$L:busybox-amd64" big
    local i
    for i in 1 2 3; do
        mkdir -p "$WORK/big$i/big"
        random_file "$WORK/big$i/big/chunk-$i.bin" $((65 * 1024 * 1024)) "$i"
        make_tar "$WORK/big$i" "$WORK/big$i.tar"
        rm -rf "$WORK/big$i"
        add_layer big big "$WORK/big$i.tar" "add /big/chunk-$i.bin (65 MiB)"
        rm -f "$WORK/big$i.tar"
    done

    # The cold-pull benchmark's many-layer image (hack/bench pull-cold --image ...big10): no
    # busybox base, every layer the same size, so that per-layer costs and download
    # concurrency show.
    log "big10 (10 x 20 MiB incompressible layers)"
    umoci tag --image "$L:scratch" big10
    for i in $(seq 1 10); do
        mkdir -p "$WORK/big10-$i/big10"
        random_file "$WORK/big10-$i/big10/chunk-$i.bin" $((20 * 1024 * 1024)) "10-$i"
        make_tar "$WORK/big10-$i" "$WORK/big10-$i.tar"
        rm -rf "$WORK/big10-$i"
        add_layer big10 big10 "$WORK/big10-$i.tar" "add /big10/chunk-$i.bin (20 MiB)"
        rm -f "$WORK/big10-$i.tar"
    done

    # Drop helper tags and the superseded config/manifest blobs.
    umoci rm --image "$L:scratch"
    umoci gc --layout "$L"

    # The multi-platform index, assembled by hand (umoci only does single
    # images): arm64 FIRST, amd64 second. Added after gc, which needn't
    # understand nested indexes.
    local arm amd tmp size dig
    arm=$(tag_descriptor busybox-arm64)
    amd=$(tag_descriptor busybox-amd64)
    tmp=$WORK/index.json
    jq -ncj --arg mt "$MT_INDEX" --argjson arm "$arm" --argjson amd "$amd" '
        def entry(d; arch): d | del(.annotations) + {platform: {architecture: arch, os: "linux"}};
        {schemaVersion: 2, mediaType: $mt,
         manifests: [entry($arm; "arm64"), entry($amd; "amd64")]}
    ' >"$tmp"
    size=$(stat -c %s "$tmp")
    dig=$(write_blob "$tmp")
    set_tag busybox "$MT_INDEX" "$dig" "$size"

    # umoci creates blobs 0600; let non-root readers (tests) use the layout.
    chmod -R a+rX "$L"
    rm -rf "$LAYOUT" "$WORK"
    mv "$L" "$LAYOUT"
    L=$LAYOUT
}

# inputs_hash : everything that can change the images' bytes.
inputs_hash() {
    {
        sha256sum "$0" "$BERTH_HACK_DIR/lib.sh" "$BERTH_HACK_DIR/images/httpd.c" \
            "$BERTH_HACK_DIR/images/pause.c" "$BUSYBOX" | cut -d' ' -f1
        umoci --version
        gcc --version | head -n1
        dpkg-query -W -f='${Package} ${Version}\n' busybox-static libc6-dev tar zstd openssl umoci
    } | sha256sum | cut -d' ' -f1
}

layout_complete() {
    local t
    [[ -f $LAYOUT/index.json ]] || return 1
    for t in "${PUSH_ORDER[@]}"; do
        tag_descriptor "$t" >/dev/null 2>&1 || return 1
    done
}

# ---------------------------------------------------------------------------
# Push and report
# ---------------------------------------------------------------------------

# remote_digest HOST REF MEDIATYPE [CREDS] : digest HOST serves for REF, or "".
remote_digest() {
    local host=$1 repo=${2%:*} tag=${2##*:} mt=$3 auth=()
    [[ -n ${4:-} ]] && auth=(-u "$4")
    curl -fsS -I --max-time 10 "${auth[@]}" -H "Accept: $mt" \
        "http://$host/v2/$REPO/$repo/manifests/$tag" 2>/dev/null |
        tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }'
}

# push_all HOST [CREDS] : push every image to HOST unless already there.
push_all() {
    local host=$1 creds=${2:-} t desc mt dig ref got opts
    for t in "${PUSH_ORDER[@]}"; do
        ref=${PUSH_REF[$t]}
        desc=$(tag_descriptor "$t")
        mt=$(jq -r .mediaType <<<"$desc")
        dig=$(jq -r .digest <<<"$desc")
        if ((!FORCE)) && [[ $(remote_digest "$host" "$ref" "$mt" "$creds") == "$dig" ]]; then
            log "$host/$REPO/$ref is up to date"
            continue
        fi
        log "pushing $host/$REPO/$ref"
        opts=()
        [[ $mt == "$MT_INDEX" ]] && opts+=(--all)
        [[ -n $creds ]] && opts+=(--dest-creds "$creds")
        # Straight from the OCI layout with --preserve-digests: blobs and
        # manifests go up byte-for-byte (skopeo fails rather than
        # recompressing or converting).
        skopeo copy -q "${opts[@]}" --preserve-digests --dest-tls-verify=false \
            "oci:$L:$t" "docker://$host/$REPO/$ref"
        got=$(remote_digest "$host" "$ref" "$mt" "$creds")
        [[ $got == "$dig" ]] || die "$host/$REPO/$ref: registry serves digest '$got', layout has $dig"
    done
}

# image_size DIGEST : bytes of a manifest + its config + layers; for an
# index, of the index plus every distinct blob its manifests reference.
image_size() {
    local m d
    m=$(blob_path "$1")
    {
        echo "$1 $(stat -c %s "$m")"
        if [[ $(jq -r '.mediaType // ""' "$m") == "$MT_INDEX" ]]; then
            jq -r '.manifests[] | "\(.digest) \(.size)"' "$m"
            for d in $(jq -r '.manifests[].digest' "$m"); do
                jq -r '(.config, .layers[]) | "\(.digest) \(.size)"' "$(blob_path "$d")"
            done
        else
            jq -r '(.config, .layers[]) | "\(.digest) \(.size)"' "$m"
        fi
    } | sort -u | awk '{ s += $2 } END { print s }'
}

report() {
    local t desc dig size ref sub
    : >"$DIGESTS.tmp"
    printf '\n%-42s %-73s %s\n' IMAGE "MANIFEST DIGEST" SIZE
    for t in "${PUSH_ORDER[@]}"; do
        ref=$REGISTRY/$REPO/${PUSH_REF[$t]}
        desc=$(tag_descriptor "$t")
        dig=$(jq -r .digest <<<"$desc")
        size=$(image_size "$dig")
        printf '%-42s %-73s %s\n' "$ref" "$dig" "$(numfmt --to=iec-i --suffix=B "$size")"
        echo "$ref $dig" >>"$DIGESTS.tmp"
        if [[ $(jq -r .mediaType <<<"$desc") == "$MT_INDEX" ]]; then
            while read -r sub; do
                printf '  %-40s %s\n' "${sub%% *}" "${sub#* }"
                echo "$ref#${sub%% *} ${sub#* }" >>"$DIGESTS.tmp"
            done < <(jq -r '.manifests[] | "\(.platform.os)/\(.platform.architecture) \(.digest)"' "$(blob_path "$dig")")
        fi
    done
    mv "$DIGESTS.tmp" "$DIGESTS"
    printf '\n(digests also in %s)\n' "$DIGESTS"
}

# ---------------------------------------------------------------------------

mkdir -p "$IMG_DIR"
# One build at a time: concurrent test runs share $BERTH_TEST_DIR.
exec 9>"$IMG_DIR/.lock"
flock 9

L=$LAYOUT
hash=$(inputs_hash)
if ((!FORCE)) && [[ -f $STAMP && $(<"$STAMP") == "$hash" ]] && layout_complete; then
    log "layout $LAYOUT is up to date"
else
    log "building images into $LAYOUT"
    rm -f "$STAMP"
    start=$SECONDS
    build_all
    echo "$hash" >"$STAMP"
    log "build took $((SECONDS - start))s"
fi

if ((PUSH)); then
    # 9>&-: the registry must not inherit our lock (registry.sh also closes
    # stray fds; this is belt and braces).
    "$BERTH_HACK_DIR/registry.sh" start 9>&-
    push_all "$REGISTRY"
    if ((WITH_AUTH)); then
        "$BERTH_HACK_DIR/registry.sh" start-auth 9>&-
        push_all "$AUTH_REGISTRY" "$AUTH_CREDS"
    fi
fi
report
