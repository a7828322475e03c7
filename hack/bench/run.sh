#!/usr/bin/env bash
# Side-by-side benchmark: Berth (berthd) vs containerd 1.6 (CRI plugin), same
# machine, same run, same workloads and iterations.
#
#   hack/bench/run.sh                    # default workloads: version status list
#   hack/bench/run.sh version            # just some workloads
#   BERTH_BENCH_ITERATIONS=5000 hack/bench/run.sh list
#   hack/bench/run.sh pull-cold:10:1 pull-warm:500 image-queries   # NAME[:ITERATIONS[:WARMUP]]
#   hack/bench/run.sh images             # the image set: pull-cold:10:1 pull-warm:500:20 image-queries:2000:100
#   hack/bench/run.sh pull-big10         # pull-cold:5:1 of berth-test/big10 (10 x 20 MiB layers) beside the
#                                        # curl floor (BERTH_BENCH_IMAGE, if set, wins)
#   hack/bench/run.sh containers         # container:100:10 pod-container:50:5 pod-memory:1:0 (~2 min)
#   hack/bench/run.sh streaming          # exec-sync:300:30 exec-session:300:30 port-forward-throughput:9:1
#   hack/bench/run.sh stats              # ListContainerStats at 10, 100, 300 running containers, 200 (+20)
#                                        # calls at each; ContainerStats, ListPodSandboxStats at 100 (~6 min)
#   hack/bench/run.sh floor              # container-floor:100:10 container-later:100:10
#                                        # container-stop-timeout:10:1: StartContainer vs a bare
#                                        # `runc run --detach` of the same bundle, for a pod's first and a
#                                        # later container; stop of a container ignoring SIGTERM (timeout 2 s)
#   hack/bench/run.sh parallel           # cycles-par4:100:8 cycles-par16:160:16 pod-container-burst:3:1:
#                                        # pod+container cycles 4 and 16 at a time (cycles/s), and
#                                        # BERTH_BENCH_BURST_PODS (100) pods with a container started at once
#
# Image workloads pull from the local test registry (hack/registry.sh start,
# hack/test-images.sh); image-queries also needs hack/bench/many-images.sh,
# which this script runs itself.
#
# Per runtime it measures
#   * startup: exec -> first successful Version RPC, BERTH_BENCH_STARTUP_RUNS
#     times from empty root/state dirs (median reported), and idle RSS after it;
#   * each workload: per-op latency percentiles (berth-bench), RSS before/after.
# and prints one side-by-side table. Both daemons are stopped on exit (trap),
# nothing stays running or mounted. Results (JSON + text) go to
# $BERTH_BENCH_DIR/results/<timestamp>/.
#
# Environment (all optional):
#   BERTH_BENCH_DIR            base dir (default /var/tmp/berth-bench)
#   BERTH_BENCH_ITERATIONS     measured iterations per workload (default 2000)
#   BERTH_BENCH_WARMUP         warm-up iterations per workload (default 200)
#   BERTH_BENCH_CONCURRENCY    concurrent client tasks (default 1)
#   BERTH_BENCH_STARTUP_RUNS   startup repetitions (default 5; 0 skips startup)
#   BERTH_BENCH_SETTLE_MS      idle time before measuring idle RSS (default 1000)
#   BERTH_BENCH_RUNTIMES       "berth containerd" (default), or just one of them
#   BERTH_BENCH_NO_BUILD=1     don't run cargo build (use existing binaries)
#   BERTHD_BIN, BERTH_BENCH_BIN  binaries (default: $CARGO_TARGET_DIR or target/, release)
#   BERTH_BENCH_BERTHD_ARGS    extra berthd arguments (word-split)
#   BERTH_BENCH_METRICS_PORT   berthd --metrics-address port (default: a free one from 19190)
#   BERTH_BENCH_CNI_CONF_DIR   CNI conf dir for containerd (see containerd.sh)
#   BERTH_BENCH_MEMORY_PODS    pod-memory: pods started (default 10)
#   BERTH_BENCH_STATS_ITERATIONS, BERTH_BENCH_STATS_WARMUP
#                              stats: calls per population size (default 200, 20 warm-up; a
#                              stats:ITERATIONS:WARMUP argument overrides them)
#   BERTH_BENCH_STATS_SIZES    stats: running-container counts, grown in order (default 10,100,300)
#   BERTH_BENCH_STATS_POD_CONTAINERS  stats: containers per pod (default 10)
#   BERTH_BENCH_BURST_PODS     pod-container-burst: pods started at once (default 100)
#   BERTH_BENCH_STATE_TMPFS    1 (default): both runtimes' state dirs on a tmpfs, as /run is on a
#                              node; 0: on the disk under BERTH_BENCH_DIR
#   BERTH_BENCH_IMAGE          pull-cold / pull-warm: the image (default berth-bench's, berth-test/big)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_DIR=${BERTH_BENCH_DIR:-/var/tmp/berth-bench}
export BERTH_BENCH_DIR=$BENCH_DIR
ITER=${BERTH_BENCH_ITERATIONS:-2000}
WARMUP=${BERTH_BENCH_WARMUP:-200}
CONC=${BERTH_BENCH_CONCURRENCY:-1}
STARTUP_RUNS=${BERTH_BENCH_STARTUP_RUNS:-5}
SETTLE_MS=${BERTH_BENCH_SETTLE_MS:-1000}
STATE_TMPFS=${BERTH_BENCH_STATE_TMPFS:-1}
read -r -a RUNTIMES <<<"${BERTH_BENCH_RUNTIMES:-berth containerd}"
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
BERTHD_BIN=${BERTHD_BIN:-$TARGET/release/berthd}
BENCH_BIN=${BERTH_BENCH_BIN:-$TARGET/release/berth-bench}
export BERTH_BENCH_BIN=$BENCH_BIN
read -r -a BERTHD_EXTRA <<<"${BERTH_BENCH_BERTHD_ARGS:-}"
STATS_ITER=${BERTH_BENCH_STATS_ITERATIONS:-200}
STATS_WARMUP=${BERTH_BENCH_STATS_WARMUP:-20}
STATS_SIZES=${BERTH_BENCH_STATS_SIZES:-10,100,300}
STATS_POD_CONTAINERS=${BERTH_BENCH_STATS_POD_CONTAINERS:-10}
BURST_PODS=${BERTH_BENCH_BURST_PODS:-100}
PULL_IMAGE=${BERTH_BENCH_IMAGE:-}

WORKLOADS=()
for w in "$@"; do
  case $w in
  images) WORKLOADS+=(pull-cold:10:1 pull-warm:500:20 image-queries:2000:100) ;;
  pull-big10)
    WORKLOADS+=(pull-cold:5:1)
    PULL_IMAGE=${BERTH_BENCH_IMAGE:-127.0.0.1:5000/berth-test/big10:latest}
    ;;
  containers) WORKLOADS+=(container:100:10 pod-container:50:5 pod-memory:1:0) ;;
  streaming) WORKLOADS+=(exec-sync:300:30 exec-session:300:30 port-forward-throughput:9:1) ;;
  floor) WORKLOADS+=(container-floor:100:10 container-later:100:10 container-stop-timeout:10:1) ;;
  parallel) WORKLOADS+=(cycles-par4:100:8 cycles-par16:160:16 pod-container-burst:3:1) ;;
  *) WORKLOADS+=("$w") ;;
  esac
done
((${#WORKLOADS[@]})) || WORKLOADS=(version status list)
# Workloads whose iterations are slow (each starts processes) default to fewer iterations than
# BERTH_BENCH_ITERATIONS / BERTH_BENCH_WARMUP, unless NAME:ITERATIONS[:WARMUP] says otherwise.
default_iterations() { # NAME -> "ITER WARMUP", or nothing
  case $1 in
  container) echo "100 10" ;;
  pod-container) echo "50 5" ;;
  pod-memory) echo "1 0" ;;
  exec-sync | exec-session) echo "300 30" ;;
  port-forward-throughput) echo "9 1" ;;
  container-floor | container-later) echo "100 10" ;;
  container-stop-timeout) echo "10 1" ;;
  cycles-par4) echo "100 8" ;;
  cycles-par16) echo "160 16" ;;
  pod-container-burst) echo "3 1" ;;
  stats) echo "$STATS_ITER $STATS_WARMUP" ;; # per population size
  esac
}
# NAME[:ITERATIONS[:WARMUP]] -> globals W_NAME W_ITER W_WARMUP
parse_workload() {
  local spec=$1 def
  W_NAME=${spec%%:*}
  W_ITER=$ITER
  W_WARMUP=$WARMUP
  def=$(default_iterations "$W_NAME")
  if [[ -n $def ]]; then read -r W_ITER W_WARMUP <<<"$def"; fi
  if [[ $spec == *:* ]]; then
    spec=${spec#*:}
    W_ITER=${spec%%:*}
    [[ $spec == *:* ]] && W_WARMUP=${spec#*:}
  fi
  [[ $W_ITER =~ ^[0-9]+$ && $W_WARMUP =~ ^[0-9]+$ ]] || die "bad workload spec '$1' (NAME[:ITERATIONS[:WARMUP]])"
}

BERTH_DIR=$BENCH_DIR/berth
BERTH_SOCK=$BERTH_DIR/berth.sock
BERTH_PIDFILE=$BERTH_DIR/berthd.pid
STARTUP_DIR=$BENCH_DIR/startup
OUT=$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)

log() { echo "run.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
has_runtime() { [[ " ${RUNTIMES[*]} " == *" $1 "* ]]; }

for r in "${RUNTIMES[@]}"; do
  [[ $r == berth || $r == containerd ]] || die "unknown runtime '$r' in BERTH_BENCH_RUNTIMES"
done

# ---------------------------------------------------------------- cleanup

# Kill (one pid at a time) processes whose command line mentions DIR: only
# daemons this script or berth-bench started with our private paths match.
# shellcheck disable=SC2317  # invoked from the EXIT trap
kill_ours_under() {
  local dir=$1 d pid
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -qF -- "$dir/"; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
}

umount_under() {
  local m
  while read -r m; do
    [[ -n $m ]] && { umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"; }
  done < <(awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | uniq)
}

stop_berthd() {
  [[ -f $BERTH_PIDFILE ]] || return 0
  local pid i
  pid=$(<"$BERTH_PIDFILE")
  if [[ $pid =~ ^[0-9]+$ ]] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "--listen unix://$BERTH_SOCK"; then
    # Pods/containers left by a workload go through the CRI (network teardown).
    timeout 120 "$BENCH_BIN" cleanup --endpoint "unix://$BERTH_SOCK" 2>&1 |
      grep -v ' 0 container(s) and 0 pod' >&2 || true
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "berthd pid $pid ignored SIGTERM for 15s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$BERTH_PIDFILE"
}

# The bare runc containers of container-floor / container-later that an interrupted run left:
# a private runc root beside berthd's state dir (berth-bench deletes them itself otherwise).
delete_floor_containers() {
  local root c
  for root in "$BERTH_DIR"/berth-bench-floor-*/runc; do
    [[ -d $root ]] || continue
    for c in "$root"/*; do
      [[ -d $c ]] && { runc --root "$root" delete --force "${c##*/}" >/dev/null 2>&1 || log "warning: could not delete floor container ${c##*/}"; }
    done
    rm -rf "${root%/runc}"
  done
  return 0
}

# shellcheck disable=SC2317  # invoked from the EXIT trap
cleanup() {
  local rc=$?
  set +e
  delete_floor_containers
  stop_berthd
  "$HERE/containerd.sh" stop >/dev/null 2>&1
  BERTH_BENCH_CONTAINERD_DIR=$STARTUP_DIR/containerd "$HERE/containerd.sh" stop >/dev/null 2>&1
  kill_ours_under "$STARTUP_DIR"
  kill_ours_under "$BERTH_DIR"
  sleep 0.2
  umount_under "$BERTH_DIR"
  umount_under "$STARTUP_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build

if [[ ${BERTH_BENCH_NO_BUILD:-} != 1 ]]; then
  pkgs=(-p berth-bench)
  has_runtime berth && pkgs+=(-p berthd)
  log "building ${pkgs[*]} (release, target dir $TARGET)"
  (cd "$REPO" && CARGO_TARGET_DIR=$TARGET cargo build --release "${pkgs[@]}") ||
    die "build failed (set BERTH_BENCH_RUNTIMES=containerd to benchmark containerd alone)"
  # berth-init (pods with a shared PID namespace) is a workspace of its own; beside berthd.
  if has_runtime berth; then
    (cd "$REPO" && cargo build --release --manifest-path cmd/berth-init/Cargo.toml --target-dir "$TARGET") ||
      die "building berth-init failed"
    # berth-monitor (one per pod with containers): its own workspace, static and non-PIE, as the
    # Makefile's build target makes it, installed beside berthd.
    if [[ -f $REPO/cmd/berth-monitor/Cargo.toml ]]; then
      (cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
        cargo build --release --manifest-path cmd/berth-monitor/Cargo.toml \
        --target x86_64-unknown-linux-gnu --target-dir "$TARGET/monitor") ||
        die "building berth-monitor failed"
      install -D -m 0755 "$TARGET/monitor/x86_64-unknown-linux-gnu/release/berth-monitor" "$TARGET/release/berth-monitor"
    fi
  fi
fi
[[ -x $BENCH_BIN ]] || die "$BENCH_BIN not found"
if has_runtime berth; then
  [[ -x $BERTHD_BIN ]] || die "$BERTHD_BIN not found"
  # berthd runs containers through the berth-monitor beside it (else one from PATH).
  [[ -x $(dirname "$BERTHD_BIN")/berth-monitor ]] ||
    log "warning: no berth-monitor beside $BERTHD_BIN: container workloads will fail or use one from PATH"
fi
if has_runtime containerd; then command -v containerd >/dev/null || die "containerd not installed (apt-get install containerd)"; fi

mkdir -p "$OUT"
log "results in $OUT"
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_AT_START%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  log "warning: load average $LOAD_AT_START on $(nproc) CPUs: other work is running, expect noisy figures"
fi

free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
METRICS_PORT=${BERTH_BENCH_METRICS_PORT:-$(free_port 19190)}

# Both runtimes use the same CNI network (containerd.sh reads the same variables): the bridge
# berth0 on 10.88.0.0/16 with host-local IPAM in a private data dir, seeded if missing.
CNI_CONF_DIR=${BERTH_BENCH_CNI_CONF_DIR:-$BENCH_DIR/cni/net.d}
CNI_BIN_DIR=${BERTH_BENCH_CNI_BIN_DIR:-/usr/lib/cni}
if [[ -z ${BERTH_BENCH_CNI_CONF_DIR:-} ]]; then
  mkdir -p "$CNI_CONF_DIR" "$BENCH_DIR/cni/ipam"
  "$HERE/../install-cni-config.sh" "$CNI_CONF_DIR" "$BENCH_DIR/cni/ipam" >/dev/null 2>&1
fi
BERTHD_CONFIG=$BENCH_DIR/berthd.toml
mkdir -p "$BENCH_DIR"
printf '[cni]\nconf_dir = "%s"\nbin_dirs = ["%s"]\n' "$CNI_CONF_DIR" "$CNI_BIN_DIR" >"$BERTHD_CONFIG"

berthd_argv() { # ROOT STATE SOCK -> BERTHD_ARGV
  BERTHD_ARGV=("$BERTHD_BIN" --config "$BERTHD_CONFIG" --root "$1" --state "$2" --listen "unix://$3"
    --metrics-address "127.0.0.1:$METRICS_PORT" --log-level warn "${BERTHD_EXTRA[@]}")
}

# ---------------------------------------------------------------- startup

if ((STARTUP_RUNS > 0)); then
  if has_runtime berth; then
    d=$STARTUP_DIR/berth
    mkdir -p "$d"
    log "berth startup x$STARTUP_RUNS"
    berthd_argv "$d/root" "$d/state" "$d/berth.sock"
    "$BENCH_BIN" startup --label berth --endpoint "unix://$d/berth.sock" \
      --repeat "$STARTUP_RUNS" --settle-ms "$SETTLE_MS" --with-children \
      --fresh-dir "$d/root" --fresh-dir "$d/state" --log-file "$d/berthd.log" \
      --json-file "$OUT/berth-startup.json" -- "${BERTHD_ARGV[@]}" \
      | tee "$OUT/berth-startup.txt" >&2
    umount_under "$d"
  fi
  if has_runtime containerd; then
    d=$STARTUP_DIR/containerd
    cfg=$(BERTH_BENCH_CONTAINERD_DIR=$d "$HERE/containerd.sh" config)
    log "containerd startup x$STARTUP_RUNS"
    "$BENCH_BIN" startup --label containerd --endpoint "unix://$d/containerd.sock" \
      --repeat "$STARTUP_RUNS" --settle-ms "$SETTLE_MS" --with-children \
      --fresh-dir "$d/root" --fresh-dir "$d/state" --log-file "$d/containerd.log" \
      --json-file "$OUT/containerd-startup.json" -- "$(command -v containerd)" --config "$cfg" \
      | tee "$OUT/containerd-startup.txt" >&2
    umount_under "$d"
  fi
fi

# ---------------------------------------------------------------- workloads

# Both daemons run side by side (idle when not benchmarked); the workloads
# alternate berth, containerd, berth, ... so that background load on the
# machine hits both sides alike.
status=0

if has_runtime berth; then
  delete_floor_containers
  stop_berthd
  umount_under "$BERTH_DIR"
  rm -rf "$BERTH_DIR/root" "$BERTH_DIR/state"
  mkdir -p "$BERTH_DIR/root" "$BERTH_DIR/state"
  # On a tmpfs, as /run is on a node; containerd.sh does the same for containerd's state dir.
  if [[ $STATE_TMPFS == 1 ]]; then
    mount -t tmpfs -o mode=0711,size=1g berth-bench-state "$BERTH_DIR/state"
  fi
  rm -f "$BERTH_SOCK"
  berthd_argv "$BERTH_DIR/root" "$BERTH_DIR/state" "$BERTH_SOCK"
  setsid "${BERTHD_ARGV[@]}" >>"$BERTH_DIR/berthd.log" 2>&1 </dev/null &
  echo $! >"$BERTH_PIDFILE"
  "$BENCH_BIN" wait --endpoint "unix://$BERTH_SOCK" --timeout 60 ||
    { tail -n 20 "$BERTH_DIR/berthd.log" >&2; die "berthd did not come up (log: $BERTH_DIR/berthd.log)"; }
  log "berthd pid $(<"$BERTH_PIDFILE") on unix://$BERTH_SOCK"
  BERTH_RUN_ARGS=(--endpoint "unix://$BERTH_SOCK" --label berth --pid "$(<"$BERTH_PIDFILE")"
    --with-children --process-name berth-monitor --match-cmdline "$BERTH_DIR/"
    --pod-process berth-monitor --pod-process berth-init)
fi

if has_runtime containerd; then
  "$HERE/containerd.sh" stop >/dev/null 2>&1 || true
  # Fresh, empty store like berthd's.
  rm -rf "$BENCH_DIR/containerd/root" "$BENCH_DIR/containerd/state"
  "$HERE/containerd.sh" start
  eval "$("$HERE/containerd.sh" env)"
  sock=${BERTH_BENCH_CONTAINERD_ENDPOINT#unix://}
  CTRD_RUN_ARGS=(--endpoint "unix://$sock" --label containerd --pid "$BERTH_BENCH_CONTAINERD_PID"
    --with-children --process-name containerd-shim-runc-v2 --match-cmdline "$sock"
    --pod-process containerd-shim-runc-v2 --pod-process pause)
fi

for w in "${WORKLOADS[@]}"; do
  parse_workload "$w"
  if [[ $W_NAME == image-queries ]]; then "$HERE/many-images.sh" 200; fi
  for r in "${RUNTIMES[@]}"; do
    log "$r: $W_NAME x$W_ITER (+$W_WARMUP warm-up)"
    if [[ $r == berth ]]; then args=("${BERTH_RUN_ARGS[@]}"); else args=("${CTRD_RUN_ARGS[@]}"); fi
    "$BENCH_BIN" "${args[@]}" -n "$W_ITER" --warmup "$W_WARMUP" -c "$CONC" \
      --memory-pods "${BERTH_BENCH_MEMORY_PODS:-10}" \
      --stats-sizes "$STATS_SIZES" --stats-pod-containers "$STATS_POD_CONTAINERS" \
      --burst-pods "$BURST_PODS" ${PULL_IMAGE:+--image "$PULL_IMAGE"} \
      --json-file "$OUT/$r-$W_NAME.json" "$W_NAME" >>"$OUT/$r.txt" || status=$?
  done
done

has_runtime berth && stop_berthd
has_runtime containerd && "$HERE/containerd.sh" stop

# ---------------------------------------------------------------- report

echo
specs=()
for w in "${WORKLOADS[@]}"; do
  parse_workload "$w"
  specs+=("$W_NAME:$W_ITER:$W_WARMUP")
done
echo "berth-bench: ${specs[*]} (NAME:ITERATIONS:WARM-UP), concurrency $CONC;" \
  "$(nproc) CPUs, kernel $(uname -r), load average at start $LOAD_AT_START"
if has_runtime berth && has_runtime containerd; then
  cmp_args=()
  for w in "${WORKLOADS[@]}"; do
    parse_workload "$w"
    # A workload whose setup failed (exit 2) left no report: say so, compare the rest.
    if [[ -f $OUT/berth-$W_NAME.json && -f $OUT/containerd-$W_NAME.json ]]; then
      cmp_args+=(--left "$OUT/berth-$W_NAME.json" --right "$OUT/containerd-$W_NAME.json")
    else
      log "warning: $W_NAME: no report from one side (see $OUT/*.txt and the messages above)"
    fi
  done
  if ((STARTUP_RUNS > 0)); then
    cmp_args+=(--left-startup "$OUT/berth-startup.json" --right-startup "$OUT/containerd-startup.json")
  fi
  "$BENCH_BIN" compare "${cmp_args[@]}" | tee "$OUT/compare.txt"
else
  for r in "${RUNTIMES[@]}"; do
    if [[ -f $OUT/$r-startup.txt ]]; then cat "$OUT/$r-startup.txt"; fi
    cat "$OUT/$r.txt"
  done
fi
echo "details: $OUT"
if ((status != 0)); then
  log "some calls failed (exit $status); see $OUT/*.txt"
fi
exit "$status"
