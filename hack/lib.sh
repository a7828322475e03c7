# shellcheck shell=bash
# Shared helpers for the hack/ test-rig scripts. Source it, don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Everything the rig creates lives under one directory so that a test run can
# be wiped with a single rm -rf.
BERTH_TEST_DIR=${BERTH_TEST_DIR:-/var/tmp/berth-test}
export BERTH_TEST_DIR

# Absolute path of hack/ (the directory holding this file).
BERTH_HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export BERTH_HACK_DIR

# log/warn go to stderr so that stdout stays usable for machine-readable output.
log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "${0##*/}" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

# need_cmd CMD... : fail early with a hint instead of a confusing error later.
need_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 ||
            die "missing command '$c' (run: sudo hack/install-deps.sh)"
    done
}

# wait_for_http URL TIMEOUT_SECONDS [extra curl args...]
# Polls until curl succeeds (2xx); returns 1 on timeout.
wait_for_http() {
    local url=$1 timeout=$2 deadline
    shift 2
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# pid_alive PID : true if PID exists (signal 0 only checks, never kills).
pid_alive() {
    [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null
}

# listening_pids PORT : pids of processes with a TCP listener on PORT (any
# address), one per line; empty if nothing listens. Needs root to see the pids
# of other users' processes, which is how the rig is run.
listening_pids() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true
}

# port_in_use PORT : true if anything has a TCP listener on PORT.
port_in_use() {
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
}
