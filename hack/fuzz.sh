#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), without cargo-fuzz: builds the fuzz
# workspaces with the nightly toolchain and the RUSTFLAGS cargo-fuzz would use, then runs each
# libFuzzer binary with -max_total_time. Fails (and names the reproducer) on any crash, panic,
# sanitizer report, leak or per-input timeout.
#
#   hack/fuzz.sh [SECONDS]
#
# Fuzz workspaces (FUZZ_DIRS below): pkg/spdy/fuzz (SPDY frames and sessions) and fuzz/ (layer
# tars, manifests, CNI results, config files, CRI requests). Each target is a [[bin]] of one of
# them; its name says which, so FUZZ_TARGETS needs only names.
#
# Environment: CARGO_TARGET_DIR (artifacts go to $CARGO_TARGET_DIR/fuzz, default target/fuzz),
# FUZZ_TOOLCHAIN (default nightly), FUZZ_SANITIZER (address or none; default address if it
# builds), FUZZ_TARGETS (default: every target of every workspace), FUZZ_JOBS (default 1).
# Working corpora live in <target>/fuzz/corpus/<target>, seeded from <workspace>/corpus/<target>.
# Reproduce a crash: <target>/fuzz/<triple>/release/<target> <crash-file>
# The unpack target creates files (device nodes too) under a temp dir: it needs root.
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
out=${CARGO_TARGET_DIR:-$root/target}/fuzz
toolchain=${FUZZ_TOOLCHAIN:-nightly}
jobs=${FUZZ_JOBS:-1}

# Every fuzz workspace, relative to the repository root.
FUZZ_DIRS=(pkg/spdy/fuzz fuzz)

# target name -> its workspace, from the [[bin]] names in each Cargo.toml.
declare -A dir_of=()
all_targets=()
for d in "${FUZZ_DIRS[@]}"; do
    while read -r name; do
        if [[ -n ${dir_of[$name]:-} ]]; then
            echo "fuzz: target $name is defined in both ${dir_of[$name]} and $d" >&2
            exit 2
        fi
        dir_of[$name]=$d
        all_targets+=("$name")
    done < <(sed -n '/^\[\[bin\]\]/,/^name/s/^name *= *"\(.*\)"/\1/p' "$root/$d/Cargo.toml")
done
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"
dirs=()
for t in "${targets[@]}"; do
    if [[ -z ${dir_of[$t]:-} ]]; then
        echo "fuzz: unknown target $t (known: ${all_targets[*]})" >&2
        exit 2
    fi
    if [[ " ${dirs[*]} " != *" ${dir_of[$t]} "* ]]; then
        dirs+=("${dir_of[$t]}")
    fi
done

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz: the $toolchain toolchain is not installed (rustup toolchain install $toolchain)" >&2
    exit 1
fi
if ! command -v c++ >/dev/null 2>&1; then
    # libfuzzer-sys compiles libFuzzer (C++).
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y --no-install-recommends g++ >/dev/null
    else
        echo "fuzz: a C++ compiler is needed (apt-get install g++)" >&2
        exit 1
    fi
fi

triple=$(rustup run "$toolchain" rustc -vV | sed -n 's/^host: //p')
base_flags=(
    --cfg fuzzing
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cdebug-assertions
    -Coverflow-checks
    -Cforce-frame-pointers
)
asan_flags=(-Zsanitizer=address -Cunsafe-allow-abi-mismatch=sanitizer)

build() {
    # An explicit --target keeps RUSTFLAGS off build scripts and proc macros, as cargo-fuzz does.
    # All workspaces share one target dir: each target is a distinct binary there.
    local d
    for d in "${dirs[@]}"; do
        RUSTFLAGS="$*" rustup run "$toolchain" cargo build \
            --manifest-path "$root/$d/Cargo.toml" \
            --locked --release --bins --target "$triple" --target-dir "$out" || return 1
    done
}

sanitizer=${FUZZ_SANITIZER:-address}
case $sanitizer in
address)
    # Newer nightlies need the ABI-mismatch allowance (std is not built with ASan), older ones
    # do not know it; without either, fuzz without ASan rather than not at all.
    if ! build "${base_flags[@]}" "${asan_flags[@]}" &&
        ! build "${base_flags[@]}" -Zsanitizer=address; then
        echo "fuzz: building with AddressSanitizer failed; building without it" >&2
        sanitizer=none
        build "${base_flags[@]}"
    fi
    ;;
none) build "${base_flags[@]}" ;;
*)
    echo "fuzz: FUZZ_SANITIZER must be address or none" >&2
    exit 2
    ;;
esac

failed=()
for t in "${targets[@]}"; do
    corpus=$out/corpus/$t
    artifacts=$out/artifacts/$t
    seeds=$root/${dir_of[$t]}/corpus/$t
    mkdir -p "$corpus" "$artifacts"
    if [[ -d $seeds ]]; then
        cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
    fi
    echo "fuzz: $t for ${seconds}s (sanitizer: $sanitizer)"
    parallel=()
    if [[ $jobs -gt 1 ]]; then
        parallel=(-jobs="$jobs" -workers="$jobs")
    fi
    status=0
    "$out/$triple/release/$t" "${parallel[@]}" \
        -max_total_time="$seconds" \
        -timeout=20 \
        -rss_limit_mb=2048 \
        -max_len=65536 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/" \
        "$corpus" || status=$?
    if [[ $status -ne 0 ]]; then
        echo "fuzz: $t FAILED (exit $status); reproducers:" >&2
        ls -1 "$artifacts" >&2 || true
        failed+=("$t")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: failing targets: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all targets ran ${seconds}s without a crash"
