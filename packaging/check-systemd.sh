#!/usr/bin/env bash
# `make check-systemd`: `systemd-analyze verify` on berthd.service as `make install` and the Debian
# package install it. verify needs no running systemd, but it does need ExecStart's binary to
# exist, so the unit is checked as installed into a scratch directory with a stand-in berthd (the
# unit's syntax and settings are under test here, not berthd). Any warning fails the check:
# verify exits 0 on an unknown key or a bad value, which it only reports.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

install -d "$scratch/bin" "$scratch/unit"
printf '#!/bin/sh\nexit 0\n' >"$scratch/bin/berthd"
chmod 0755 "$scratch/bin/berthd"
sed "s|^ExecStart=/usr/bin/berthd|ExecStart=$scratch/bin/berthd|" "$here/berthd.service" \
    >"$scratch/unit/berthd.service"
grep -q "^ExecStart=$scratch/bin/berthd\$" "$scratch/unit/berthd.service" || {
    echo "check-systemd: berthd.service has no ExecStart=/usr/bin/berthd for install.sh to rewrite" >&2
    exit 1
}

status=0
output=$(systemd-analyze verify --man=no "$scratch/unit/berthd.service" 2>&1) || status=$?
if ((status != 0)) || [[ -n $output ]]; then
    echo "check-systemd: systemd-analyze verify rejects packaging/berthd.service:" >&2
    echo "$output" >&2
    exit 1
fi

# The settings the service depends on, which verify accepts either way.
# shellcheck disable=SC2016 # $MAINPID is systemd's, not the shell's
for setting in Type=notify Delegate=yes KillMode=process Restart=always TasksMax=infinity \
    OOMScoreAdjust=-999 'ExecReload=/bin/kill -HUP $MAINPID'; do
    grep -qxF "$setting" "$here/berthd.service" || {
        echo "check-systemd: berthd.service lacks $setting" >&2
        exit 1
    }
done
echo "check-systemd: berthd.service verified ($(systemd-analyze --version | head -n 1))"
