#!/usr/bin/env bash
# Soak test (not in CI): N pod+container cycles, a few at a time, against a berthd of its own,
# with berthd's RSS, open fds and threads sampled throughout; then checks that they stayed flat
# and that nothing leaked.
#
#   hack/soak.sh                     # 10000 cycles, 4 at a time (builds release binaries first)
#   SOAK_CYCLES=400 SOAK_INTERVAL=2 hack/soak.sh
#
# One cycle is berth-bench's pod-container workload (hack/bench): RunPodSandbox, CreateContainer,
# StartContainer, ContainerStatus until RUNNING, StopPodSandbox, RemovePodSandbox. It needs the
# test registry with the busybox image (hack/registry.sh start; hack/test-images.sh).
#
# The cycles run in ten slices of 10%. Every SOAK_INTERVAL seconds the sampler appends
# `kind,seconds,cycles,rss_kib,fds,threads` to $SOAK_DIR/samples.csv (kind "run"; cycles:
# RemovePodSandbox calls that succeeded, from berthd's /metrics). After each slice, with nothing
# in flight, berthd gets SOAK_SETTLE seconds to go idle (tokio retires idle blocking threads after
# 10 s) and a "quiet" sample is taken: fds and threads taken mid-cycle mostly count the cycles in
# flight, the quiet samples count what stays. At the end:
#   * stability: the first slice is warm-up; the quiet samples after it must each stay within
#     +-SOAK_TOLERANCE % (or one unit, for the small fd and thread counts) of their median, per series (the max deviation and the drift from the
#     first to the last are reported, and for information the same for the running samples);
#   * leaks, after berthd has stopped: pods or containers still listed, mounts under $SOAK_DIR,
#     new network namespaces, new pod cgroups under berthd's /berth parent, processes (monitors
#     among them) under $SOAK_DIR, CNI IP reservations and masquerade rules of the soak network;
#   * berthd exited 0 on SIGTERM and closed its metadata store: a second start on the same root
#     must not have to repair it.
# It prints a summary with the curve (one line per 10% of progress) and exits 1 if a check failed.
#
# Environment (all optional):
#   SOAK_CYCLES       pod+container cycles (default 10000)
#   SOAK_CONCURRENCY  cycles in flight at once (default 4)
#   SOAK_INTERVAL     seconds between samples (default 5)
#   SOAK_TOLERANCE    allowed deviation from the median after warm-up, in % (default 10)
#   SOAK_SETTLE       idle seconds before each quiet sample (default 12)
#   SOAK_DIR          working directory, wiped at start (default $BERTH_TEST_DIR/soak)
#   SOAK_NO_BUILD=1   don't build; use the binaries below as they are
#   SOAK_BIN_DIR      where berthd, berth-bench, berth-init and berth-monitor are (default target/release)
#   SOAK_IMAGE        the containers' image (default: berth-bench's, the test registry's busybox)
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO=$(cd "$BERTH_HACK_DIR/.." && pwd)
CYCLES=${SOAK_CYCLES:-10000}
CONC=${SOAK_CONCURRENCY:-4}
INTERVAL=${SOAK_INTERVAL:-5}
TOLERANCE=${SOAK_TOLERANCE:-10}
SETTLE=${SOAK_SETTLE:-12}
DIR=${SOAK_DIR:-$BERTH_TEST_DIR/soak}
BIN_DIR=${SOAK_BIN_DIR:-$REPO/target/release}
BERTHD=$BIN_DIR/berthd
BENCH=$BIN_DIR/berth-bench
CSV=$DIR/samples.csv
SOCK=$DIR/state/berth.sock
LOG=$DIR/berthd.log
NET=berth-soak

[[ $CYCLES =~ ^[0-9]+$ && $CYCLES -ge 10 ]] || die "SOAK_CYCLES must be a number >= 10"
[[ $CONC =~ ^[0-9]+$ && $CONC -ge 1 ]] || die "SOAK_CONCURRENCY must be a number >= 1"
[[ $INTERVAL =~ ^[0-9]+$ && $INTERVAL -ge 1 ]] || die "SOAK_INTERVAL must be whole seconds >= 1"
[[ $TOLERANCE =~ ^[0-9]+$ ]] || die "SOAK_TOLERANCE must be a whole percentage"
[[ $SETTLE =~ ^[0-9]+$ ]] || die "SOAK_SETTLE must be whole seconds"
((EUID == 0)) || die "run as root (berthd makes namespaces, mounts and cgroups)"
need_cmd curl awk ip

if [[ ${SOAK_NO_BUILD:-} != 1 ]]; then
    log "building (make build)"
    make -C "$REPO" build >&2
fi
for b in berthd berth-bench berth-init berth-monitor; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b not found (build it, or set SOAK_BIN_DIR)"
done

BERTHD_PID=
SAMPLER_PID=
BENCH_PID=

# Stops what this script started, by pid. Pods are removed through the CRI first, so that their
# network teardown runs.
# shellcheck disable=SC2317  # invoked from the EXIT trap
cleanup() {
    local rc=$? i
    set +e
    [[ -n $BENCH_PID ]] && pid_alive "$BENCH_PID" && kill -TERM "$BENCH_PID" && wait "$BENCH_PID"
    [[ -n $SAMPLER_PID ]] && pid_alive "$SAMPLER_PID" && kill -TERM "$SAMPLER_PID" && wait "$SAMPLER_PID"
    if [[ -n $BERTHD_PID ]] && pid_alive "$BERTHD_PID"; then
        timeout 300 "$BENCH" cleanup --endpoint "unix://$SOCK" >/dev/null 2>&1
        kill -TERM "$BERTHD_PID"
        for ((i = 0; i < 150; i++)); do
            pid_alive "$BERTHD_PID" || break
            sleep 0.1
        done
        pid_alive "$BERTHD_PID" && kill -KILL "$BERTHD_PID"
        wait "$BERTHD_PID"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup

free_port() {
    local p=$1
    while port_in_use "$p"; do p=$((p + 1)); done
    echo "$p"
}

# Leftovers of an earlier run would count as leaks of this one.
if awk -v d="$DIR/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    die "$DIR still has mounts from an earlier run; unmount them first"
fi
rm -rf "$DIR"
mkdir -p "$DIR/root" "$DIR/state" "$DIR/cni/net.d" "$DIR/cni/ipam" "$DIR/etc"

# A network of its own (bridge, subnet, IPAM data dir), so that its leftovers are told apart from
# other runtimes' on this host.
cat >"$DIR/cni/net.d/10-$NET.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "berthsoak0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni/ipam",
        "routes": [{ "dst": "0.0.0.0/0" }],
        "ranges": [[{ "subnet": "10.86.0.0/16" }]]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
printf '[cni]\nconf_dir = "%s"\nbin_dirs = ["/usr/lib/cni"]\n' "$DIR/cni/net.d" >"$DIR/etc/config.toml"

# What exists before berthd starts, to tell new objects from other users' (compared at the end).
pod_cgroups() { find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d -path '*/berth/*' 2>/dev/null | sort; }
netns_names() { find /run/netns -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort; }
pod_cgroups >"$DIR/cgroups.before"
netns_names >"$DIR/netns.before"

METRICS_PORT=$(free_port 19290)
start_berthd() {
    setsid "$BERTHD" --config "$DIR/etc/config.toml" --root "$DIR/root" --state "$DIR/state" \
        --listen "unix://$SOCK" --metrics-address "127.0.0.1:$METRICS_PORT" --log-level warn \
        >>"$LOG" 2>&1 </dev/null &
    BERTHD_PID=$!
    "$BENCH" wait --endpoint "unix://$SOCK" --timeout 60 >/dev/null 2>&1 ||
        { tail -n 20 "$LOG" >&2; die "berthd did not come up (log: $LOG)"; }
}
start_berthd
log "berthd pid $BERTHD_PID; $CYCLES cycles, $CONC at a time; samples every ${INTERVAL}s in $CSV"

# ---------------------------------------------------------------- run and sample

# Cycles done so far: RemovePodSandbox calls that succeeded.
cycles_done() {
    curl -fsS --max-time 2 "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null |
        awk '/^berth_cri_operations_total\{/ && /code="OK"/ && /method="RemovePodSandbox"/ { n += $NF } END { printf "%d\n", n }'
}

sample() { # KIND
    local rss threads fds
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$BERTHD_PID/status" 2>/dev/null) || return 0
    threads=$(awk '/^Threads:/ { print $2 }' "/proc/$BERTHD_PID/status" 2>/dev/null) || return 0
    fds=$(find "/proc/$BERTHD_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    [[ -n $rss && -n $threads ]] || return 0
    echo "$1,$SECONDS,$(cycles_done),$rss,$fds,$threads" >>"$CSV"
}

sampler() {
    trap 'exit 0' TERM
    while pid_alive "$BERTHD_PID"; do
        sample run
        sleep "$INTERVAL" &
        wait $!
    done
}

echo "kind,seconds,cycles,rss_kib,fds,threads" >"$CSV"
SECONDS=0
sampler &
SAMPLER_PID=$!

image_args=()
[[ -n ${SOAK_IMAGE:-} ]] && image_args=(--container-image "$SOAK_IMAGE")
bench_status=0
for ((slice = 1; slice <= 10; slice++)); do
    n=$((CYCLES * slice / 10 - CYCLES * (slice - 1) / 10))
    "$BENCH" --endpoint "unix://$SOCK" --label berth -n "$n" --warmup 0 -c "$CONC" \
        "${image_args[@]}" --json-file "$DIR/bench-$slice.json" pod-container >"$DIR/bench-$slice.txt" 2>&1 &
    BENCH_PID=$!
    wait "$BENCH_PID" || bench_status=$?
    BENCH_PID=
    sleep "$SETTLE"
    sample quiet
    log "$((slice * 10))% ($(cycles_done) cycles, ${SECONDS}s)"
done
kill -TERM "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" || true
SAMPLER_PID=
ELAPSED=$SECONDS

# ---------------------------------------------------------------- stop and check

failures=()
((bench_status == 0)) || failures+=("berth-bench exited $bench_status (see $DIR/bench-*.txt)")

# Nothing should be left for the CRI cleanup to remove.
left=$(timeout 300 "$BENCH" cleanup --endpoint "unix://$SOCK" 2>&1) || true
[[ $left == *" 0 container(s) and 0 pod sandbox(es)"* ]] || failures+=("left in berthd: $left")

kill -TERM "$BERTHD_PID"
berthd_status=0
wait "$BERTHD_PID" || berthd_status=$?
BERTHD_PID=
((berthd_status == 0)) || failures+=("berthd exited $berthd_status on SIGTERM")
# A store left open would be repaired (and logged so) by the next start.
mark=$(wc -c <"$LOG")
start_berthd
kill -TERM "$BERTHD_PID"
wait "$BERTHD_PID" || true
BERTHD_PID=
if tail -c +"$((mark + 1))" "$LOG" | grep -q "not closed cleanly"; then
    failures+=("berthd did not close its metadata store: the restart repaired it (see $LOG)")
fi

leaks=()
while read -r m; do leaks+=("mount: $m"); done < <(awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo)
while read -r n; do leaks+=("network namespace: /run/netns/$n"); done < <(netns_names | comm -13 "$DIR/netns.before" -)
while read -r c; do leaks+=("cgroup: $c"); done < <(pod_cgroups | comm -13 "$DIR/cgroups.before" -)
for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    cmd=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
    links=$(readlink "$d/exe" "$d/cwd" "$d/root" 2>/dev/null) || true
    if [[ $cmd == *"$DIR/"* || $links == *"$DIR/"* ]]; then leaks+=("process $pid: $cmd"); fi
done
while read -r f; do leaks+=("CNI IP reservation: $f"); done < <(find "$DIR/cni/ipam" -type f ! -name 'last_reserved_ip*' ! -name lock 2>/dev/null)
if command -v iptables >/dev/null; then
    # The bridge plugin's masquerade rules carry `--comment "name: \"<network>\" id: ..."`.
    rules=$(iptables -w -t nat -S 2>/dev/null | grep -cF "\\\"$NET\\\"" || true)
    ((rules == 0)) || leaks+=("$rules iptables nat rule(s) of network $NET")
fi
if [[ -d /sys/class/net/berthsoak0 ]]; then
    # The bridge plugin never deletes its bridge (other pods may use it): not a leak, tidy it.
    ip link del berthsoak0 2>/dev/null || true
fi

# ---------------------------------------------------------------- report

# Reads the CSV; prints the curve (the quiet sample after each 10% slice) and, for each series,
# the median of the quiet samples after warm-up, the largest deviation from it and the drift from
# the first to the last of them; then the same for the running samples, for information. The last
# line is "ok" or "unstable" (quiet samples only).
analysis=$(awk -F, -v tol="$TOLERANCE" '
    NR == 1 { next }
    $1 == "quiet" { q++; qt[q] = $2; qc[q] = $3; v["q", 1, q] = $4; v["q", 2, q] = $5; v["q", 3, q] = $6 }
    # Running samples after the first quiet one (warm-up done).
    $1 == "run" && q >= 1 { r++; v["r", 1, r] = $4; v["r", 2, r] = $5; v["r", 3, r] = $6 }
    function median(k, s, from, to,    m, i, j, x, a) {
        m = 0
        for (i = from; i <= to; i++) a[++m] = v[k, s, i]
        for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
        return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    # A sample is out when it is more than tol % AND more than one unit from the median: fds
    # and threads are small counts (5 threads: one idle tokio thread more or less is 20 %).
    function series(k, from, to, label, check,    s, med, worst, d, a, i, drift, bad) {
        for (s = 1; s <= 3; s++) {
            med = median(k, s, from, to); worst = 0; bad = 0
            for (i = from; i <= to; i++) {
                a = v[k, s, i] - med
                d = (med > 0) ? 100 * a / med : 0
                if (d * d > worst * worst) worst = d
                if (check && a * a > 1 && d * d > tol * tol) bad = 1
            }
            drift = (v[k, s, from] > 0) ? 100 * (v[k, s, to] - v[k, s, from]) / v[k, s, from] : 0
            if (bad) verdict = "unstable"
            printf "  %-6s %-8s median %9.1f  max deviation %+6.1f%%  drift %+6.1f%%  %s\n", label, name[s], med, worst, drift, check ? (bad ? "OUTSIDE +-" tol "%" : "ok") : "(info)"
        }
    }
    END {
        name[1] = "rss_kib"; name[2] = "fds"; name[3] = "threads"
        if (q < 3) { print "too few quiet samples"; print "unstable"; exit }
        printf "  %8s %8s %8s %10s %6s %8s\n", "progress", "cycles", "seconds", "rss_kib", "fds", "threads"
        for (i = 1; i <= q; i++)
            printf "  %7d%% %8d %8d %10d %6d %8d%s\n", i * 10, qc[i], qt[i], v["q", 1, i], v["q", 2, i], v["q", 3, i], i == 1 ? "  (warm-up)" : ""
        verdict = "ok"
        series("q", 2, q, "quiet", 1)
        if (r > 0) series("r", 1, r, "run", 0)
        print verdict
    }' "$CSV")

echo
echo "soak: $CYCLES pod+container cycles, $CONC at a time, in ${ELAPSED}s ($(nproc) CPUs, kernel $(uname -r))"
echo "latency of the last 10%:"
grep -E '^(op |pod\+container|teardown) ' "$DIR/bench-10.txt" | sed 's/^/  /' || true
sed '$d' <<<"$analysis"
verdict=$(tail -n 1 <<<"$analysis")
[[ $verdict == ok ]] || failures+=("berthd's RSS, fds or threads left +-$TOLERANCE% of their median after warm-up")
if ((${#leaks[@]})); then
    echo "leaks: ${#leaks[@]}"
    printf '  %s\n' "${leaks[@]}"
    failures+=("${#leaks[@]} leak(s)")
else
    echo "leaks: 0 (mounts, netns, pod cgroups, processes/monitors, CNI IPs, masquerade rules)"
fi
warnings=$(grep -cE ' (WARN|ERROR) ' "$LOG" || true)
echo "berthd log: $warnings WARN/ERROR line(s) ($LOG); samples: $CSV"
if ((${#failures[@]})); then
    printf 'FAIL: %s\n' "${failures[@]}"
    exit 1
fi
echo "PASS"
