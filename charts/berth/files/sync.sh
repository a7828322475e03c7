#!/bin/sh
# The berth chart's config-sync loop, run by the DaemonSet on every Berth node (busybox sh; any POSIX
# sh with cat, cmp, mkdir, mv, rm, sleep and kill works). It keeps berthd's drop-in in step with the
# chart's ConfigMap, tells berthd to reload after a change, and removes the drop-in when the release
# is uninstalled. charts/tests/test_chart.py runs it against a stand-in berthd.
#
# Paths are the container's (see templates/daemonset.yaml); the environment can move them:
#   SOURCE        the drop-in as the ConfigMap volume has it
#   CONFIG_DIR    the node's berthd config dir (hostPath); the drop-in goes to config.d/50-helm.toml
#   LOCK_FILE     the lock beside berthd's socket, holding berthd's pid (hostPath, read-only)
#   LABELS_FILE   this pod's labels (downward API); the uninstall hook adds berth.dev/uninstall
#   STATE_DIR     a scratch dir (emptyDir); `uninstalled` there makes the readiness probe fail
#   SYNC_INTERVAL seconds between checks
#   RELOAD        "true": send berthd SIGHUP after a change
set -u

SOURCE=${SOURCE:-/config/50-helm.toml}
CONFIG_DIR=${CONFIG_DIR:-/host/etc/berth}
LOCK_FILE=${LOCK_FILE:-/host/run/berth/berth.sock.lock}
LABELS_FILE=${LABELS_FILE:-/podinfo/labels}
STATE_DIR=${STATE_DIR:-/run/sync}
SYNC_INTERVAL=${SYNC_INTERVAL:-10}
RELOAD=${RELOAD:-true}

DROPIN_DIR=$CONFIG_DIR/config.d
DROPIN=$DROPIN_DIR/50-helm.toml

# To stderr, so that functions can print results on stdout; the container log has both.
log() {
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >&2
}

# The pid of the berthd serving this node, or nothing. The lock file may name a berthd that is gone
# (its pid possibly reused since), and SIGHUP's default action ends a process, so the pid must be a
# process named berthd that catches SIGHUP: bit 0 (signal 1) of SigCgt. A berthd too old to reload
# does not catch it, and is left to read the drop-in at its next start.
berthd_pid() {
    pid=$(cat "$LOCK_FILE" 2>/dev/null) || pid=
    case $pid in
    '' | *[!0-9]*)
        log "no berthd pid in $LOCK_FILE"
        return 1
        ;;
    esac
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || comm=
    if [ "$comm" != berthd ]; then
        log "pid $pid in $LOCK_FILE is not a running berthd (${comm:-no such process})"
        return 1
    fi
    caught=
    if [ -r "/proc/$pid/status" ]; then
        while read -r key value; do
            if [ "$key" = SigCgt: ]; then caught=$value; fi
        done <"/proc/$pid/status"
    fi
    case $caught in
    *[13579bBdDfF]) echo "$pid" ;;
    *)
        log "berthd (pid $pid) does not handle SIGHUP; it reads the drop-in at its next start"
        return 1
        ;;
    esac
}

reload() {
    if [ "$RELOAD" != true ]; then
        log "reload disabled; berthd reads the drop-in at its next start"
        return 0
    fi
    pid=$(berthd_pid) || return 0
    if kill -HUP "$pid"; then
        log "sent SIGHUP to berthd (pid $pid)"
    else
        log "could not signal berthd (pid $pid)"
    fi
}

# Writes the drop-in atomically: a temporary file in the same directory (a dot name without .toml,
# which berthd never reads), flushed, then renamed over the old one. Returns non-zero on failure,
# leaving the old drop-in as it was.
install_dropin() {
    mkdir -p "$DROPIN_DIR" || return 1
    tmp=$DROPIN_DIR/.50-helm.toml.$$
    if cat "$SOURCE" >"$tmp" && chmod 0644 "$tmp" && { sync "$tmp" 2>/dev/null || true; } &&
        mv -f "$tmp" "$DROPIN"; then
        return 0
    fi
    rm -f "$tmp"
    return 1
}

uninstalling() {
    grep -q '^berth\.dev/uninstall="true"$' "$LABELS_FILE" 2>/dev/null
}

# The release is being uninstalled: remove the drop-in (once), reload, and report it through the
# readiness probe. The pod then idles until Helm deletes it; it must not write the file again.
uninstall() {
    if [ -e "$DROPIN" ]; then
        if rm -f "$DROPIN"; then
            log "release uninstalled: removed $DROPIN"
            reload
        else
            log "could not remove $DROPIN"
            return 1
        fi
    fi
    mkdir -p "$STATE_DIR" && : >"$STATE_DIR/uninstalled"
}

# SIGTERM (pod deletion) ends the loop at once; sleeping in the background keeps the shell able to
# run the trap. Nothing is removed here: a pod also stops when the node shuts down or the DaemonSet
# rolls, and the node's berthd must keep its configuration then.
sleeper=
trap 'if [ -n "$sleeper" ]; then kill "$sleeper" 2>/dev/null; fi; exit 0' TERM INT

log "syncing $SOURCE to $DROPIN every ${SYNC_INTERVAL}s (reload: $RELOAD)"
while :; do
    if uninstalling; then
        uninstall || true
    elif [ ! -f "$SOURCE" ]; then
        log "$SOURCE is missing"
    elif ! cmp -s "$SOURCE" "$DROPIN"; then
        if install_dropin; then
            log "wrote $DROPIN"
            reload
        else
            log "could not write $DROPIN; retrying"
        fi
    fi
    sleep "$SYNC_INTERVAL" &
    sleeper=$!
    wait "$sleeper"
    sleeper=
done
